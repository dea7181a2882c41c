//! The drop tracer's programs (`init/src/droptrace/ebpf.rs` loads this
//! object): userspace fills the globals below from the running kernel
//! (tracefs format file, BTF) and loads only the hook it uses.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{bpf_get_current_comm, bpf_probe_read_kernel},
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf, StackTrace},
    programs::{tracing::StackIdContext, BtfTracePointContext, TracePointContext},
    Global,
};
use aya_log_ebpf::debug;
use myinit_common::droptrace::{
    DropEvent, DropSummaryKey, DROP_HAS_DEV, DROP_HAS_L3, DROP_HAS_L4, DROP_HAS_NETNS,
    DROP_HAS_PACKET, DROP_HAS_SKB_OFFSETS, DROP_HAS_STACK, MAX_SNAPLEN, MODE_SUMMARY, STACK_NONE,
};
use myinit_ebpf::{count_lost, kread, submit_bytes_batched, ABSENT};

/// Drop events for userspace; 4 MiB holds ~26k events between two reads,
/// enough for a flood on a small VM without loss.
#[map]
static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// The reader is woken once per this many bytes of events (~2k events);
/// between, it finds them at its next poll (every 10 ms).
const WAKEUP_BYTES: u64 = 256 << 10;

/// Events the ring buffer could not take (or, in summary mode, drops whose
/// new key found the count map full), per CPU (index 0).
#[map]
static DROP_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Summary mode's counts: per CPU, so no atomic or lock on the drop path.
/// 16k distinct (reason, location, device, protocol) keys; more are lost.
#[map]
static DROP_SUMMARY: PerCpuHashMap<DropSummaryKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// Kernel stacks of drops (`--stack`), by id; userspace sets the size
/// (1 without `--stack`: the program never touches it then).
#[map]
static DROP_STACKS: StackTrace = StackTrace::with_max_entries(1, 0);

/// Stacks `bpf_get_stackid` could not store (a full bucket of the stack
/// map, or no stack), per CPU (index 0): never silent.
#[map]
static DROP_STACK_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The filter (`droptrace start … FILTER`), translated to eBPF at run time
/// (init's `filter/ebpf.rs`): slot 0 the filter, 1 the program it
/// tail-calls on a match (`kfree_skb_matched` or `kfree_skb_btf_matched`,
/// the same hook's). A drop the filter rejects reserves nothing, so `lost`
/// counts only drops that matched.
#[map]
static DROP_FILTER: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// Non-zero when a filter is set: every drop goes through it first.
#[unsafe(no_mangle)]
static FILTERED: Global<u8> = Global::new(0);

/// `--dev`, `--netns` and `--reason`, selected in the kernel before the
/// filter and the ring, so that other drops neither fill the ring nor count
/// as lost.
/// The name as two native-endian words (`WANT_DEV` non-zero when set);
/// `WANT_NETNS` 0 for any namespace. Constants to the verifier: unset, the
/// check is pruned.
#[unsafe(no_mangle)]
static WANT_DEV: Global<u8> = Global::new(0);
#[unsafe(no_mangle)]
static WANT_DEV_NAME_LO: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static WANT_DEV_NAME_HI: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static WANT_NETNS: Global<u32> = Global::new(0);
/// `--reason`'s number, `ABSENT` for any: checked first, from the hook's
/// own argument, before anything is read of the skb.
#[unsafe(no_mangle)]
static WANT_REASON: Global<u32> = Global::new(ABSENT);

/// `MODE_EVENTS` or `MODE_SUMMARY`, set by userspace before load (a
/// constant to the verifier, so the other path is pruned).
#[unsafe(no_mangle)]
static MODE: Global<u32> = Global::new(0);

/// 1: take the kernel stack of each drop (`--stack`). Like MODE a constant
/// to the verifier: off, the stack code is pruned and costs nothing.
#[unsafe(no_mangle)]
static STACK: Global<u32> = Global::new(0);

/// Packet bytes each event carries (`--snaplen`), 0 for none; at most
/// `MAX_SNAPLEN`. A constant to the verifier too: it sizes the record.
#[unsafe(no_mangle)]
static SNAPLEN: Global<u32> = Global::new(0);

// Offsets of the classic `skb:kfree_skb` record's fields. They differ between
// kernels (6.1 has no rx_sk), so userspace reads them from the tracepoint's
// `format` file and overrides these before load.
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_SKBADDR: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_LOCATION: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_PROTOCOL: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_REASON: Global<u32> = Global::new(ABSENT);

// Member offsets of `struct sk_buff` and `struct net_device`. Rust eBPF has
// no CO-RE relocations, so userspace looks them up in the running kernel's
// BTF and overrides these; without them events carry no packet summary.
#[unsafe(no_mangle)]
static SKB_OFF_HEAD: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static SKB_OFF_NETWORK_HEADER: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static SKB_OFF_MAC_HEADER: Global<u32> = Global::new(ABSENT);
/// `sk_buff.tail` and `.data`: the end of the linear data (an offset from
/// `head` on 64-bit kernels) and where the current header starts (a pointer).
#[unsafe(no_mangle)]
static SKB_OFF_TAIL: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static SKB_OFF_DATA: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static SKB_OFF_DEV: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static SKB_OFF_LEN: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static SKB_OFF_PROTOCOL: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static NETDEV_OFF_IFINDEX: Global<u32> = Global::new(ABSENT);
#[unsafe(no_mangle)]
static NETDEV_OFF_NAME: Global<u32> = Global::new(ABSENT);
/// `net_device.nd_net` (a `possible_net_t`, whose first member is `net`).
#[unsafe(no_mangle)]
static NETDEV_OFF_ND_NET: Global<u32> = Global::new(ABSENT);
/// `net.ns.inum`: the namespace's inode number.
#[unsafe(no_mangle)]
static NET_OFF_INUM: Global<u32> = Global::new(ABSENT);

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// `skb->network_header` / `transport_header` value meaning "not set".
const HEADER_UNSET: u16 = 0xffff;
/// IPv6 extension headers walked before giving up on finding the L4
/// header (a bounded loop for the verifier; real packets carry one or two).
const MAX_IPV6_EXT: usize = 8;

/// How members of kernel structs (`sk_buff`, `net_device`, `net`) are read.
trait Members {
    fn read<T: Copy>(base: u64, off: u32) -> Option<T>;
}

/// A probe read (a helper call): for the classic tracepoint, whose `skb`
/// is a plain number to the verifier.
struct ProbeRead;

impl Members for ProbeRead {
    #[inline(always)]
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        kread::<T>(base, off)
    }
}

/// A plain load through a BTF-typed pointer (tp_btf's `skb` and the
/// pointers read from it): the verifier checks the member against BTF and
/// makes it a fault-safe load, several times cheaper than a helper call.
/// Offsets are rodata constants, so they fold into the load's fixed offset.
struct BtfLoad;

impl Members for BtfLoad {
    #[inline(always)]
    fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
        if off == ABSENT || base == 0 {
            return None;
        }
        // SAFETY: the verifier turns this into a PROBE_MEM load of a
        // member it checked in BTF; a bad address reads as zero.
        Some(unsafe { core::ptr::read_volatile((base + off as u64) as *const T) })
    }
}

/// `net_device.name`, as two 8-byte loads (one load per member access for
/// the verifier's BTF check).
#[inline(always)]
fn dev_name<M: Members>(dev: u64) -> Option<[u8; 16]> {
    let off = NETDEV_OFF_NAME.load();
    if off == ABSENT {
        return None;
    }
    let a = M::read::<u64>(dev, off)?;
    let b = M::read::<u64>(dev, off + 8)?;
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(&a.to_ne_bytes());
    name[8..].copy_from_slice(&b.to_ne_bytes());
    Some(name)
}

/// The device's network namespace inode, 0 when unknown.
#[inline(always)]
fn netns_of<M: Members>(dev: u64) -> u32 {
    M::read::<u64>(dev, NETDEV_OFF_ND_NET.load())
        .and_then(|net| M::read::<u32>(net, NET_OFF_INUM.load()))
        .unwrap_or(0)
}

/// The drop's kernel stack id with `--stack`, else `STACK_NONE`; a stack
/// the map cannot take is counted lost.
#[inline(always)]
fn stack_of<C: StackIdContext>(ctx: &C) -> u32 {
    if STACK.load() == 0 {
        return STACK_NONE;
    }
    match ctx.get_stackid(&DROP_STACKS, 0) {
        Ok(id) => id as u32,
        Err(_) => {
            count_lost(&DROP_STACK_LOST);
            STACK_NONE
        }
    }
}

#[inline(always)]
fn read_field<T: Copy + Default>(ctx: &TracePointContext, off: u32) -> T {
    if off == ABSENT {
        return T::default();
    }
    // SAFETY: the offset comes from the tracepoint's own format description.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

/// Fills the device and packet summary from the `sk_buff`; returns `head`
/// and the network header's offset for the packet bytes.
#[inline(always)]
fn fill_from_skb<M: Members>(
    skb: u64,
    event: &mut DropEvent,
    protocol_from_skb: bool,
) -> Option<(u64, u16)> {
    if skb == 0 || SKB_OFF_HEAD.load() == ABSENT {
        return None;
    }
    event.flags |= DROP_HAS_SKB_OFFSETS;
    if protocol_from_skb {
        if let Some(protocol) = M::read::<u16>(skb, SKB_OFF_PROTOCOL.load()) {
            event.protocol = u16::from_be(protocol);
        }
    }
    if let Some(len) = M::read::<u32>(skb, SKB_OFF_LEN.load()) {
        event.len = len;
    }
    if let Some(dev) = M::read::<u64>(skb, SKB_OFF_DEV.load()) {
        if dev != 0 {
            if let (Some(ifindex), Some(name)) = (
                M::read::<u32>(dev, NETDEV_OFF_IFINDEX.load()),
                dev_name::<M>(dev),
            ) {
                event.ifindex = ifindex;
                event.dev = name;
                event.flags |= DROP_HAS_DEV;
            }
            event.netns = netns_of::<M>(dev);
            if event.netns != 0 {
                event.flags |= DROP_HAS_NETNS;
            }
        }
    }
    let head = M::read::<u64>(skb, SKB_OFF_HEAD.load())?;
    let network = M::read::<u16>(skb, SKB_OFF_NETWORK_HEADER.load())?;
    if head == 0 || network == HEADER_UNSET {
        return None;
    }
    let _ = fill_packet(head + network as u64, event);
    Some((head, network))
}

#[inline(always)]
fn fill_packet(l3: u64, event: &mut DropEvent) -> Option<()> {
    let l4 = match event.protocol {
        ETH_P_IP => {
            // Header and ports in one read when there are no options (the
            // common case): each probe read is a helper call.
            let ip = kread::<[u8; 24]>(l3, 0)?;
            if ip[0] >> 4 != 4 {
                return None;
            }
            event.ip_version = 4;
            event.l4_proto = ip[9];
            for i in 0..4 {
                event.saddr[i] = ip[12 + i];
                event.daddr[i] = ip[16 + i];
            }
            event.flags |= DROP_HAS_L3;
            // Only the first fragment carries the L4 header.
            if (u16::from(ip[6] & 0x1f) << 8 | u16::from(ip[7])) != 0 {
                return None;
            }
            let ihl = ip[0] & 0x0f;
            if ihl == 5 {
                return fill_l4(event, [ip[20], ip[21], ip[22], ip[23]]);
            }
            l3 + u64::from(ihl) * 4
        }
        ETH_P_IPV6 => {
            let ip = kread::<[u8; 40]>(l3, 0)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            for i in 0..16 {
                event.saddr[i] = ip[8 + i];
                event.daddr[i] = ip[24 + i];
            }
            event.ip_version = 6;
            event.flags |= DROP_HAS_L3;
            let (proto, l4) = walk_ipv6_ext(ip[6], l3 + 40)?;
            event.l4_proto = proto;
            l4
        }
        _ => return None,
    };
    fill_l4(event, kread::<[u8; 4]>(l4, 0)?)
}

/// Ports (TCP, UDP, SCTP, UDP-Lite) or ICMP type and code from the first
/// four bytes of the L4 header.
#[inline(always)]
fn fill_l4(event: &mut DropEvent, l4: [u8; 4]) -> Option<()> {
    match event.l4_proto {
        6 | 17 | 132 | 136 => {
            event.sport = u16::from_be_bytes([l4[0], l4[1]]);
            event.dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
        1 | 58 => {
            event.sport = u16::from(l4[0]);
            event.dport = u16::from(l4[1]);
        }
        _ => return None,
    }
    event.flags |= DROP_HAS_L4;
    Some(())
}

/// Follows IPv6 extension headers (hop-by-hop, routing, destination
/// options, fragment, AH) from `next` at `at` to the upper-layer protocol
/// and its header; the protocol alone (no header) for a non-first fragment
/// or a chain longer than `MAX_IPV6_EXT`. The stack's transport offset is
/// not used: at many drop points it is not set yet.
#[inline(always)]
fn walk_ipv6_ext(mut next: u8, mut at: u64) -> Option<(u8, u64)> {
    for _ in 0..MAX_IPV6_EXT {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units, after the first 8.
            0 | 43 | 60 => {
                let h = kread::<[u8; 2]>(at, 0)?;
                next = h[0];
                at += (u64::from(h[1]) + 1) * 8;
            }
            // Fragment: 8 bytes; only the first fragment has the L4 header.
            44 => {
                let h = kread::<[u8; 4]>(at, 0)?;
                next = h[0];
                if (u16::from_be_bytes([h[2], h[3]]) & 0xfff8) != 0 {
                    return Some((next, 0));
                }
                at += 8;
            }
            // AH: length in 4-byte units, minus 2.
            51 => {
                let h = kread::<[u8; 2]>(at, 0)?;
                next = h[0];
                at += (u64::from(h[1]) + 2) * 4;
            }
            _ => return Some((next, at)),
        }
    }
    Some((next, 0))
}

/// The record's size for this load: the event, and with `--snaplen` the
/// packet bytes after it (rounded up to 8). A constant to the verifier,
/// which insists that a ring reservation's size is one.
#[inline(always)]
fn record_size() -> usize {
    let snaplen = SNAPLEN.load();
    let bytes = if snaplen > MAX_SNAPLEN {
        MAX_SNAPLEN
    } else {
        snaplen
    };
    core::mem::size_of::<DropEvent>() + ((bytes as usize + 7) & !7)
}

/// Builds the event in place in the ring buffer (the BPF stack is too
/// small for it next to the header reads) and submits it; counts it as lost
/// when the ring is full.
#[inline(always)]
fn emit<M: Members>(
    skb: u64,
    location: u64,
    reason: u32,
    protocol: u16,
    protocol_from_skb: bool,
    stack_id: u32,
) -> Option<(u32, u64)> {
    let Some(mut slot) = DROP_EVENTS.reserve_bytes(record_size(), 0) else {
        count_lost(&DROP_LOST);
        return None;
    };
    let words = slot.as_mut_ptr().cast::<u64>();
    for i in 0..core::mem::size_of::<DropEvent>() / 8 {
        // SAFETY: the record holds at least a DropEvent; the packet bytes
        // after it are written (up to caplen) or ignored (beyond it).
        // Volatile: LLVM would make the loop a call to a byte-wise memset
        // (~550 instructions per event), BPF having no memset of its own.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: zeroed above, aligned to 8 by the ring, a DropEvent fits.
    let event = unsafe { &mut *slot.as_mut_ptr().cast::<DropEvent>() };
    event.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    event.skb = skb;
    event.location = location;
    event.reason = reason;
    event.protocol = protocol;
    event.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    event.cpu = unsafe { bpf_get_smp_processor_id() };
    // Straight into the event: the helper's safe wrapper zeroes a stack
    // buffer first (a byte-wise memset) and copies it.
    // SAFETY: comm is 16 bytes inside the reserved record.
    unsafe { bpf_get_current_comm(event.comm.as_mut_ptr().cast(), 16) };
    event.stack_id = stack_id;
    if stack_id != STACK_NONE {
        event.flags |= DROP_HAS_STACK;
    }
    let headers = fill_from_skb::<M>(skb, event, protocol_from_skb);
    if SNAPLEN.load() != 0 {
        if let Some((head, network)) = headers {
            // SAFETY: the bytes after the event are the record's own.
            let data = unsafe { slot.as_mut_ptr().add(core::mem::size_of::<DropEvent>()) };
            copy_packet::<M>(skb, head, network, event, data);
        }
    }
    submit_bytes_batched(slot, &DROP_EVENTS, WAKEUP_BYTES, record_size() as u64);
    Some((reason, location))
}

/// Copies the first `SNAPLEN` bytes of the packet from its MAC header (or
/// its network header when it has none before it) into `data`: the linear
/// part only (up to `tail`), which holds every header and, for the small
/// packets of a test bench, all of it.
#[inline(always)]
fn copy_packet<M: Members>(
    skb: u64,
    head: u64,
    network: u16,
    event: &mut DropEvent,
    data: *mut u8,
) {
    let Some(tail) = M::read::<u32>(skb, SKB_OFF_TAIL.load()) else {
        return;
    };
    let Some(data_ptr) = M::read::<u64>(skb, SKB_OFF_DATA.load()) else {
        return;
    };
    let mac = M::read::<u16>(skb, SKB_OFF_MAC_HEADER.load()).unwrap_or(HEADER_UNSET);
    let start = if mac != HEADER_UNSET && mac < network {
        mac
    } else {
        network
    };
    let start = u32::from(start);
    if tail <= start || data_ptr < head {
        return;
    }
    // skb->len counts from data: the packet from `start` is that much
    // longer (or shorter, when data is past start).
    let data_off = (data_ptr - head) as u32;
    let pkt_len = (event.len + data_off).saturating_sub(start);
    let mut n = tail - start;
    if n > pkt_len {
        n = pkt_len;
    }
    let snaplen = SNAPLEN.load();
    if n > snaplen {
        n = snaplen;
    }
    if n > MAX_SNAPLEN {
        n = MAX_SNAPLEN;
    }
    if n == 0 {
        return;
    }
    // SAFETY: n is at most SNAPLEN, the bytes reserved after the event;
    // the helper fails cleanly on a bad source address.
    let read =
        unsafe { bpf_probe_read_kernel(data.cast(), n, (head + u64::from(start)) as *const _) };
    if read == 0 {
        event.caplen = n as u16;
        event.pkt_len = pkt_len;
        event.link_len = (u32::from(network) - start) as u16;
        event.flags |= DROP_HAS_PACKET;
    }
}

/// Summary mode: one more on the drop's (reason, location, device,
/// protocol[, stack]) counter; nothing else is read and no event is made.
#[inline(always)]
fn count<M: Members>(
    skb: u64,
    location: u64,
    reason: u32,
    protocol: u16,
    protocol_from_skb: bool,
    stack_id: u32,
) {
    let protocol = if protocol_from_skb {
        M::read::<u16>(skb, SKB_OFF_PROTOCOL.load()).map_or(protocol, u16::from_be)
    } else {
        protocol
    };
    let (mut ifindex, mut netns) = (0, 0);
    if let Some(dev) = M::read::<u64>(skb, SKB_OFF_DEV.load()) {
        if dev != 0 {
            ifindex = M::read::<u32>(dev, NETDEV_OFF_IFINDEX.load()).unwrap_or(0);
            netns = netns_of::<M>(dev);
        }
    }
    // Built from values read first, every field named: zeroing a key and
    // filling it in after would be a call to a byte-wise memset.
    let key = DropSummaryKey {
        location,
        reason,
        ifindex,
        netns,
        protocol,
        _pad: 0,
        stack_id,
        _pad2: 0,
    };
    if let Some(n) = DROP_SUMMARY.get_ptr_mut(&key) {
        // SAFETY: this CPU's own slot; a program runs to its end on one CPU.
        unsafe { *n += 1 };
        return;
    }
    // A new key; EEXIST when another CPU inserted it meanwhile (its
    // element holds zero for this CPU), so look again before giving up.
    if DROP_SUMMARY.insert(&key, &1, BPF_NOEXIST as u64).is_ok() {
        return;
    }
    match DROP_SUMMARY.get_ptr_mut(&key) {
        // SAFETY: as above.
        Some(n) => unsafe { *n += 1 },
        None => count_lost(&DROP_LOST),
    }
}

/// Whether the drop is on the `--dev`/`--netns` asked for (always, when
/// neither is): a drop without a device or namespace is not.
#[inline(always)]
fn wanted<M: Members>(skb: u64) -> bool {
    let want_dev = WANT_DEV.load() != 0;
    let want_netns = WANT_NETNS.load();
    if !want_dev && want_netns == 0 {
        return true;
    }
    let Some(dev) = M::read::<u64>(skb, SKB_OFF_DEV.load()).filter(|d| *d != 0) else {
        return false;
    };
    if want_netns != 0 && netns_of::<M>(dev) != want_netns {
        return false;
    }
    if want_dev {
        let off = NETDEV_OFF_NAME.load();
        if off == ABSENT {
            return false;
        }
        let lo = M::read::<u64>(dev, off);
        let hi = M::read::<u64>(dev, off + 8);
        if lo != Some(WANT_DEV_NAME_LO.load()) || hi != Some(WANT_DEV_NAME_HI.load()) {
            return false;
        }
    }
    true
}

/// The filter first, when there is one: it tail-calls the matched
/// program or returns; if its slot is empty, nothing is traced.
#[inline(always)]
fn filtered<C: aya_ebpf::EbpfContext>(ctx: &C) -> bool {
    if FILTERED.load() == 0 {
        return false;
    }
    // SAFETY: the filter and the matched program take this hook's context.
    unsafe { DROP_FILTER.tail_call(ctx, 0) };
    true
}

#[inline(always)]
fn trace_classic(ctx: &TracePointContext) {
    let stack_id = stack_of(ctx);
    if MODE.load() == MODE_SUMMARY {
        count::<ProbeRead>(
            read_field::<u64>(ctx, KFREE_SKB_OFF_SKBADDR.load()),
            read_field::<u64>(ctx, KFREE_SKB_OFF_LOCATION.load()),
            read_field::<u32>(ctx, KFREE_SKB_OFF_REASON.load()),
            read_field::<u16>(ctx, KFREE_SKB_OFF_PROTOCOL.load()),
            false,
            stack_id,
        );
        return;
    }
    let emitted = emit::<ProbeRead>(
        read_field::<u64>(ctx, KFREE_SKB_OFF_SKBADDR.load()),
        read_field::<u64>(ctx, KFREE_SKB_OFF_LOCATION.load()),
        read_field::<u32>(ctx, KFREE_SKB_OFF_REASON.load()),
        read_field::<u16>(ctx, KFREE_SKB_OFF_PROTOCOL.load()),
        false,
        stack_id,
    );
    if let Some((reason, location)) = emitted {
        debug!(ctx, "kfree_skb reason={} location={:x}", reason, location);
    }
}

#[inline(always)]
fn trace_btf(ctx: &BtfTracePointContext) {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u64 = ctx.arg(2);
    let stack_id = stack_of(ctx);
    if MODE.load() == MODE_SUMMARY {
        count::<BtfLoad>(skb, location, reason as u32, 0, true, stack_id);
        return;
    }
    if emit::<BtfLoad>(skb, location, reason as u32, 0, true, stack_id).is_some() {
        debug!(
            ctx,
            "kfree_skb reason={} location={:x}", reason as u32, location
        );
    }
}

/// Classic tracepoint `skb:kfree_skb`: available on every kernel with tracing.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    let want_reason = WANT_REASON.load();
    if want_reason != ABSENT && read_field::<u32>(&ctx, KFREE_SKB_OFF_REASON.load()) != want_reason
    {
        return 0;
    }
    let skb = read_field::<u64>(&ctx, KFREE_SKB_OFF_SKBADDR.load());
    if !wanted::<ProbeRead>(skb) {
        return 0;
    }
    if !filtered(&ctx) {
        trace_classic(&ctx);
    }
    0
}

/// The classic tracepoint's drops the filter matched (slot 1).
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb_matched(ctx: TracePointContext) -> u32 {
    trace_classic(&ctx);
    0
}

/// BTF tracepoint `kfree_skb(skb, location, reason[, rx_sk])`: the arguments
/// keep their positions on every kernel with BTF (rx_sk, appended in 6.11,
/// is not used), so no format file is needed.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf(ctx: BtfTracePointContext) -> u32 {
    let want_reason = WANT_REASON.load();
    if want_reason != ABSENT && ctx.arg::<u64>(2) as u32 != want_reason {
        return 0;
    }
    if !wanted::<BtfLoad>(ctx.arg(0)) {
        return 0;
    }
    if !filtered(&ctx) {
        trace_btf(&ctx);
    }
    0
}

/// tp_btf's drops the filter matched (slot 1).
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf_matched(ctx: BtfTracePointContext) -> u32 {
    trace_btf(&ctx);
    0
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
