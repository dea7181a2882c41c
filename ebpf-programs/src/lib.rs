//! Helpers every eBPF capability of myinit shares: bounded kernel reads with
//! offsets handed in by userspace, and event emission into a ring buffer
//! that counts what it could not queue. Each capability is one binary under
//! `src/bin/` (one object, loaded on its own by `init/src/<capability>/`),
//! so a job creates only its own maps.
#![no_std]

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS},
    helpers::bpf_probe_read_kernel,
    maps::{
        ring_buf::{RingBufBytes, RingBufEntry},
        PerCpuArray, RingBuf,
    },
};

/// An offset userspace could not find in the running kernel's BTF or
/// tracefs: the field is not read.
pub const ABSENT: u32 = u32::MAX;

/// Reads kernel memory at `base + off`; None when the offset is unknown,
/// the base is NULL or the read faults.
#[inline(always)]
pub fn kread<T>(base: u64, off: u32) -> Option<T> {
    if off == ABSENT || base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.ok()
}

/// Adds one to this CPU's slot 0 of a lost-events counter.
#[inline(always)]
pub fn count_lost(lost: &PerCpuArray<u64>) {
    if let Some(slot) = lost.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Reserves a zeroed `T` in `ring`, or counts one lost event when the ring
/// is full. `T`'s size must be a multiple of 8 (it is zeroed word by word).
#[inline(always)]
pub fn reserve_zeroed<T: 'static>(
    ring: &RingBuf,
    lost: &PerCpuArray<u64>,
) -> Option<RingBufEntry<T>> {
    let Some(mut entry) = ring.reserve::<T>(0) else {
        count_lost(lost);
        return None;
    };
    // SAFETY: the entry holds a whole T.
    unsafe { zero_words(entry.as_mut_ptr().cast(), core::mem::size_of::<T>() / 8) };
    Some(entry)
}

/// Zeroes `n` words at `words` with plain stores. Volatile: LLVM turns a
/// loop of ordinary stores into a call to a byte-wise `memset` subprogram
/// (BPF has no memset of its own), measured at a quarter of the capture
/// program's cost.
///
/// # Safety
/// `n` words from `words` must be writable.
#[inline(always)]
unsafe fn zero_words(words: *mut u64, n: usize) {
    for i in 0..n {
        // SAFETY: inside the n words the caller vouches for.
        unsafe { words.add(i).write_volatile(0) };
    }
}

/// Reserves a `T` in `ring` whose first `header_bytes` are zeroed (rounded
/// down to 8), or counts one lost event when the ring is full. For records
/// with a payload the program overwrites itself (packet bytes): zeroing all
/// of a 1.5 KiB record per packet would be wasted work.
#[inline(always)]
pub fn reserve_header_zeroed<T: 'static>(
    ring: &RingBuf,
    lost: &PerCpuArray<u64>,
    header_bytes: usize,
) -> Option<RingBufEntry<T>> {
    let Some(mut entry) = ring.reserve::<T>(0) else {
        count_lost(lost);
        return None;
    };
    let n = core::cmp::min(header_bytes, core::mem::size_of::<T>()) / 8;
    // SAFETY: at most size_of::<T>() bytes, inside the entry.
    unsafe { zero_words(entry.as_mut_ptr().cast(), n) };
    Some(entry)
}

/// The submit flags that wake the reader once per `wakeup_bytes` of records
/// produced: when the record just reserved (`record_bytes`, as reserved)
/// ends past a multiple of it. Not by the queue's level: a level that
/// hovers at a mark while the reader works crosses it on nearly every
/// record, and each wake-up is an irq_work (a self-IPI, a VM exit) on the
/// producing CPU — a third of a flood's time, measured. Another CPU's
/// record may hide a crossing; the reader's short poll finds what a missed
/// wake-up would have said.
#[inline(always)]
pub fn wakeup_flags(ring: &RingBuf, wakeup_bytes: u64, record_bytes: u64) -> u64 {
    let produced = ring.query(BPF_RB_PROD_POS as u64);
    // The ring's own 8-byte record header, rounded up to 8 as the kernel does.
    let room = (record_bytes + 8 + 7) & !7;
    let flags = if produced % wakeup_bytes < room {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    flags as u64
}

/// Submits an entry, waking the reader as `wakeup_flags` says.
#[inline(always)]
pub fn submit_batched<T>(entry: RingBufEntry<T>, ring: &RingBuf, wakeup_bytes: u64) {
    entry.submit(wakeup_flags(
        ring,
        wakeup_bytes,
        core::mem::size_of::<T>() as u64,
    ));
}

/// `submit_batched` for a record reserved by size (`reserve_bytes`).
#[inline(always)]
pub fn submit_bytes_batched(
    entry: RingBufBytes<'_>,
    ring: &RingBuf,
    wakeup_bytes: u64,
    record_bytes: u64,
) {
    entry.submit(wakeup_flags(ring, wakeup_bytes, record_bytes));
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
