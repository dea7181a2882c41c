//! Types shared by the eBPF programs and userspace. Every type is `#[repr(C)]`
//! so both sides agree on the layout byte for byte.
#![no_std]

#[cfg(feature = "modules")]
extern crate alloc;

#[cfg(feature = "modules")]
pub mod modules;

/// `DropEvent::flags`: the device fields (`ifindex`, `dev`) were read.
pub const DROP_HAS_DEV: u16 = 1 << 0;
/// `DropEvent::flags`: the L3 fields (`ip_version`, `l4_proto`, addresses) were read.
pub const DROP_HAS_L3: u16 = 1 << 1;
/// `DropEvent::flags`: `sport`/`dport` (or ICMP type/code) were read.
pub const DROP_HAS_L4: u16 = 1 << 2;
/// `DropEvent::flags`: the program had the `sk_buff` member offsets (from BTF).
pub const DROP_HAS_SKB_OFFSETS: u16 = 1 << 3;

/// One `kfree_skb` event as the drop tracer's eBPF programs emit it. Fields
/// that could not be read stay zero and their `DROP_HAS_*` flag stays clear,
/// so userspace can say "unknown" instead of guessing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns()` at the drop (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// Kernel address of the freeing call site (symbolized from kallsyms).
    pub location: u64,
    /// Address of the `sk_buff`.
    pub skb: u64,
    /// `enum skb_drop_reason` value; its name comes from the running kernel's BTF.
    pub reason: u32,
    /// `skb->dev->ifindex` (see `DROP_HAS_DEV`).
    pub ifindex: u32,
    /// `skb->protocol` in host order (an EtherType).
    pub protocol: u16,
    /// `DROP_HAS_*` bits.
    pub flags: u16,
    pub pid: u32,
    pub cpu: u32,
    /// `skb->len`.
    pub len: u32,
    /// 4 or 6 (see `DROP_HAS_L3`).
    pub ip_version: u8,
    /// IP protocol / IPv6 next header.
    pub l4_proto: u8,
    /// Source and destination port; for ICMP the type and code.
    pub sport: u16,
    pub dport: u16,
    pub _pad: u16,
    /// Addresses in network order; IPv4 uses the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
    /// `skb->dev->name`.
    pub dev: [u8; 16],
}

// The eBPF program zeroes a reserved event 8 bytes at a time.
const _: () = assert!(core::mem::size_of::<DropEvent>().is_multiple_of(8));

#[cfg(feature = "user")]
// SAFETY: DropEvent is repr(C), Copy, and every bit pattern is valid.
unsafe impl aya::Pod for DropEvent {}
