//! The drop tracer's programs (`init/src/droptrace/ebpf.rs` loads this
//! object): userspace fills the globals below from the running kernel
//! (tracefs format file, BTF) and loads only the hook it uses.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
    Global,
};
use aya_log_ebpf::debug;
use myinit_common::droptrace::{
    DropEvent, DROP_HAS_DEV, DROP_HAS_L3, DROP_HAS_L4, DROP_HAS_SKB_OFFSETS,
};
use myinit_ebpf::{kread, reserve_zeroed, submit_batched, ABSENT};

/// Drop events for userspace; 4 MiB holds ~26k events between two reads,
/// enough for a flood on a small VM without loss.
#[map]
static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Queued bytes at which the reader is woken (~2k events); below that it
/// finds them at its next poll (every 10 ms).
const WAKEUP_BYTES: u64 = 256 << 10;

/// Events the ring buffer could not take, per CPU (index 0).
#[map]
static DROP_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

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
static SKB_OFF_TRANSPORT_HEADER: Global<u32> = Global::new(ABSENT);
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

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// `skb->network_header` / `transport_header` value meaning "not set".
const HEADER_UNSET: u16 = 0xffff;

#[inline(always)]
fn read_field<T: Copy + Default>(ctx: &TracePointContext, off: u32) -> T {
    if off == ABSENT {
        return T::default();
    }
    // SAFETY: the offset comes from the tracepoint's own format description.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

/// Fills the device and packet summary from the `sk_buff`.
#[inline(always)]
fn fill_from_skb(skb: u64, event: &mut DropEvent, protocol_from_skb: bool) {
    if skb == 0 || SKB_OFF_HEAD.load() == ABSENT {
        return;
    }
    event.flags |= DROP_HAS_SKB_OFFSETS;
    if protocol_from_skb {
        if let Some(protocol) = kread::<u16>(skb, SKB_OFF_PROTOCOL.load()) {
            event.protocol = u16::from_be(protocol);
        }
    }
    if let Some(len) = kread::<u32>(skb, SKB_OFF_LEN.load()) {
        event.len = len;
    }
    if let Some(dev) = kread::<u64>(skb, SKB_OFF_DEV.load()) {
        if dev != 0 {
            if let (Some(ifindex), Some(name)) = (
                kread::<u32>(dev, NETDEV_OFF_IFINDEX.load()),
                kread::<[u8; 16]>(dev, NETDEV_OFF_NAME.load()),
            ) {
                event.ifindex = ifindex;
                event.dev = name;
                event.flags |= DROP_HAS_DEV;
            }
        }
    }
    let _ = fill_packet(skb, event);
}

#[inline(always)]
fn fill_packet(skb: u64, event: &mut DropEvent) -> Option<()> {
    let head = kread::<u64>(skb, SKB_OFF_HEAD.load())?;
    let network = kread::<u16>(skb, SKB_OFF_NETWORK_HEADER.load())?;
    if head == 0 || network == HEADER_UNSET {
        return None;
    }
    let l3 = head + network as u64;
    let l4 = match event.protocol {
        ETH_P_IP => {
            let ip = kread::<[u8; 20]>(l3, 0)?;
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
            l3 + u64::from(ip[0] & 0x0f) * 4
        }
        ETH_P_IPV6 => {
            let ip = kread::<[u8; 8]>(l3, 0)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            event.saddr = kread::<[u8; 16]>(l3, 8)?;
            event.daddr = kread::<[u8; 16]>(l3, 24)?;
            event.ip_version = 6;
            event.l4_proto = ip[6];
            event.flags |= DROP_HAS_L3;
            // Extension headers: the stack's own transport offset, when set.
            match kread::<u16>(skb, SKB_OFF_TRANSPORT_HEADER.load()) {
                Some(t) if t != HEADER_UNSET && t > network => head + t as u64,
                _ => l3 + 40,
            }
        }
        _ => return None,
    };
    match event.l4_proto {
        // TCP, UDP, SCTP, UDP-Lite: ports. ICMP, ICMPv6: type and code.
        6 | 17 | 132 | 136 => {
            let ports = kread::<[u8; 4]>(l4, 0)?;
            event.sport = u16::from_be_bytes([ports[0], ports[1]]);
            event.dport = u16::from_be_bytes([ports[2], ports[3]]);
        }
        1 | 58 => {
            let icmp = kread::<[u8; 2]>(l4, 0)?;
            event.sport = u16::from(icmp[0]);
            event.dport = u16::from(icmp[1]);
        }
        _ => return None,
    }
    event.flags |= DROP_HAS_L4;
    Some(())
}

/// Builds the event in place in the ring buffer (the BPF stack is too
/// small for it next to the header reads) and submits it; counts it as lost
/// when the ring is full.
#[inline(always)]
fn emit(
    skb: u64,
    location: u64,
    reason: u32,
    protocol: u16,
    protocol_from_skb: bool,
) -> Option<(u32, u64)> {
    let mut slot = reserve_zeroed::<DropEvent>(&DROP_EVENTS, &DROP_LOST)?;
    // SAFETY: reserve_zeroed initialized every byte of the DropEvent.
    let event = unsafe { &mut *slot.as_mut_ptr() };
    event.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    event.skb = skb;
    event.location = location;
    event.reason = reason;
    event.protocol = protocol;
    event.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    event.cpu = unsafe { bpf_get_smp_processor_id() };
    event.comm = bpf_get_current_comm().unwrap_or_default();
    fill_from_skb(skb, event, protocol_from_skb);
    submit_batched(slot, &DROP_EVENTS, WAKEUP_BYTES);
    Some((reason, location))
}

/// Classic tracepoint `skb:kfree_skb`: available on every kernel with tracing.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    let emitted = emit(
        read_field::<u64>(&ctx, KFREE_SKB_OFF_SKBADDR.load()),
        read_field::<u64>(&ctx, KFREE_SKB_OFF_LOCATION.load()),
        read_field::<u32>(&ctx, KFREE_SKB_OFF_REASON.load()),
        read_field::<u16>(&ctx, KFREE_SKB_OFF_PROTOCOL.load()),
        false,
    );
    if let Some((reason, location)) = emitted {
        debug!(&ctx, "kfree_skb reason={} location={:x}", reason, location);
    }
    0
}

/// BTF tracepoint `kfree_skb(skb, location, reason[, rx_sk])`: the arguments
/// keep their positions on every kernel with BTF (rx_sk, appended in 6.11,
/// is not used), so no format file is needed.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_btf(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u64 = ctx.arg(2);
    if emit(skb, location, reason as u32, 0, true).is_some() {
        debug!(
            &ctx,
            "kfree_skb reason={} location={:x}", reason as u32, location
        );
    }
    0
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
