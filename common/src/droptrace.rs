//! The drop tracer's event, as `ebpf-programs/src/bin/droptrace.rs` emits it
//! and `init/src/droptrace/` decodes it.

/// `DropEvent::flags`: the device fields (`ifindex`, `dev`) were read.
pub const DROP_HAS_DEV: u16 = 1 << 0;
/// `DropEvent::flags`: the L3 fields (`ip_version`, `l4_proto`, addresses) were read.
pub const DROP_HAS_L3: u16 = 1 << 1;
/// `DropEvent::flags`: `sport`/`dport` (or ICMP type/code) were read.
pub const DROP_HAS_L4: u16 = 1 << 2;
/// `DropEvent::flags`: the program had the `sk_buff` member offsets (from BTF).
pub const DROP_HAS_SKB_OFFSETS: u16 = 1 << 3;
/// `DropEvent::flags`: `netns` (the device's network namespace) was read.
pub const DROP_HAS_NETNS: u16 = 1 << 4;
/// `DropEvent::flags`: `stack_id` names a kernel stack in the `DROP_STACKS` map.
pub const DROP_HAS_STACK: u16 = 1 << 5;
/// `DropEvent::flags`: `caplen` packet bytes follow the event in its record.
pub const DROP_HAS_PACKET: u16 = 1 << 6;

/// `stack_id` of a drop whose stack was not taken (no `--stack`) or could
/// not be stored (the stack map full: counted in `DROP_STACK_LOST`).
pub const STACK_NONE: u32 = u32::MAX;

/// The most packet bytes an event carries (`--snaplen`): a whole frame of a
/// 1500-byte MTU with room for VLAN tags; longer packets are cut (their
/// `pkt_len` says how long they were).
pub const MAX_SNAPLEN: u32 = 2048;

/// `MODE` global: one event per drop into the ring buffer.
pub const MODE_EVENTS: u32 = 0;
/// `MODE` global: only counts, in the per-CPU `DROP_SUMMARY` map.
pub const MODE_SUMMARY: u32 = 1;

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
    /// Packet bytes after the event (see `DROP_HAS_PACKET`), at most `--snaplen`.
    pub caplen: u16,
    /// Addresses in network order; IPv4 uses the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
    /// `skb->dev->name`.
    pub dev: [u8; 16],
    /// Inode of the device's network namespace (`skb->dev->nd_net.net->ns.inum`,
    /// as `lsns` and `ip netns identify` show it; see `DROP_HAS_NETNS`).
    pub netns: u32,
    /// Id in the `DROP_STACKS` map (see `DROP_HAS_STACK`), else `STACK_NONE`.
    pub stack_id: u32,
    /// Length of the packet from where its bytes start (the MAC header, or
    /// the network header when `link_len` is 0) to its end.
    pub pkt_len: u32,
    /// Bytes from the MAC header to the network header (0: the bytes start
    /// at the network header; 14: an Ethernet header).
    pub link_len: u16,
    pub _pad: u16,
}

/// Key of the summary mode's per-CPU count map: one counter per distinct
/// (reason, location, device, protocol[, stack]). Fields that could not be
/// read are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropSummaryKey {
    pub location: u64,
    pub reason: u32,
    pub ifindex: u32,
    pub netns: u32,
    /// `skb->protocol` in host order (an EtherType).
    pub protocol: u16,
    pub _pad: u16,
    /// The kernel stack (`--stack`), `STACK_NONE` without one.
    pub stack_id: u32,
    pub _pad2: u32,
}

// The eBPF program zeroes a reserved event 8 bytes at a time.
const _: () = assert!(core::mem::size_of::<DropEvent>().is_multiple_of(8));

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, no padding bytes left implicit, every bit pattern valid.
unsafe impl aya::Pod for DropSummaryKey {}

#[cfg(feature = "user")]
// SAFETY: DropEvent is repr(C), Copy, and every bit pattern is valid.
unsafe impl aya::Pod for DropEvent {}
