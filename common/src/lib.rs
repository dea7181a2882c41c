//! Types shared by the eBPF programs and userspace. Every type is `#[repr(C)]`
//! so both sides agree on the layout byte for byte.
#![no_std]

/// One `kfree_skb` event as the drop tracer's eBPF program emits it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()` at the drop.
    pub timestamp_ns: u64,
    /// Kernel address of the freeing call site (symbolized from kallsyms).
    pub location: u64,
    /// Address of the `sk_buff`.
    pub skb: u64,
    /// `enum skb_drop_reason` value; its name comes from the running kernel's BTF.
    pub reason: u32,
    /// `skb->protocol` in host order (an EtherType).
    pub protocol: u16,
    pub _pad: u16,
    pub pid: u32,
    pub cpu: u32,
    pub comm: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: DropEvent is repr(C), Copy, and every bit pattern is valid.
unsafe impl aya::Pod for DropEvent {}
