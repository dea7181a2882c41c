//! myinit's eBPF programs. Userspace (init/src/ebpf.rs) embeds this object,
//! fills the globals below from the running kernel (tracefs format files,
//! BTF) and loads only the programs a command needs.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::TracePointContext,
    Global,
};
use aya_log_ebpf::debug;
use myinit_common::DropEvent;

/// Drop events for userspace; 1 MiB holds ~16k events between two reads.
#[map]
static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Events the ring buffer could not take, per CPU (index 0).
#[map]
static DROP_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// Offsets of the classic `skb:kfree_skb` record's fields. They differ between
// kernels (6.1 has no rx_sk), so userspace reads them from the tracepoint's
// `format` file and overrides these before load. u32::MAX = field absent.
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_SKBADDR: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_LOCATION: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_PROTOCOL: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
static KFREE_SKB_OFF_REASON: Global<u32> = Global::new(u32::MAX);

#[inline(always)]
fn read_field<T: Copy + Default>(ctx: &TracePointContext, off: u32) -> T {
    if off == u32::MAX {
        return T::default();
    }
    // SAFETY: the offset comes from the tracepoint's own format description.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

/// Classic tracepoint `skb:kfree_skb`: available on every kernel with tracing.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    let event = DropEvent {
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        skb: read_field::<u64>(&ctx, KFREE_SKB_OFF_SKBADDR.load()),
        location: read_field::<u64>(&ctx, KFREE_SKB_OFF_LOCATION.load()),
        protocol: read_field::<u16>(&ctx, KFREE_SKB_OFF_PROTOCOL.load()),
        reason: read_field::<u32>(&ctx, KFREE_SKB_OFF_REASON.load()),
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        cpu: unsafe { bpf_get_smp_processor_id() },
        comm: bpf_get_current_comm().unwrap_or_default(),
        _pad: 0,
    };
    debug!(&ctx, "kfree_skb reason={} location={:x}", event.reason, event.location);
    match DROP_EVENTS.reserve::<DropEvent>(0) {
        Some(mut slot) => {
            slot.write(event);
            slot.submit(0);
        }
        None => {
            if let Some(lost) = DROP_LOST.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, no concurrent writer on this CPU.
                unsafe { *lost += 1 };
            }
        }
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
