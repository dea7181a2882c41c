//! The capture record, as `ebpf-programs/src/bin/capture.rs` queues it and
//! the capture job (`init/src/capture/`) reads it: a fixed header followed
//! by the packet's first `cap_len` bytes.

/// The largest snap length the programs copy: the largest IPv6 packet
/// (65,535 bytes of payload and its 40-byte header) with an Ethernet
/// header, rounded up to 8: whole packets, as the original captured them
/// (its users' tests check 65 kB fragments byte for byte). Longer ones (a
/// GSO super-packet past 64 KiB) are cut; `orig_len` keeps their length.
pub const SNAPLEN_MAX: usize = 65_600;

/// The room for packet bytes a ring record may have: a packet goes into the
/// smallest that holds `min(len, snaplen)` of its bytes.
/// `bpf_ringbuf_reserve` needs a constant size, so a record cannot be cut
/// to the packet; these classes keep a 64-byte frame at 112 bytes of ring
/// and a 1514-byte one at 1.5 KiB instead of the 64 KiB a single size
/// would cost them.
pub const SIZE_CLASSES: [usize; 9] = [64, 128, 256, 512, 1024, 1514, 4096, 16_384, SNAPLEN_MAX];

/// The ring buffer's size in bytes (`CAPTURE_RING`): the kernel memory one
/// eBPF capture pins. 32 MiB queue ~280,000 64-byte frames or ~21,000
/// full-size ones (~150 ms of a 1500-byte flood here) while the reader is
/// busy writing or not scheduled; 16 MiB lost full-size frames on a loaded
/// 2-core machine.
pub const RING_BYTES: u32 = 32 << 20;

/// `CaptureHeader::direction`: the packet arrived on the interface.
pub const CAPTURE_INGRESS: u8 = 0;
/// `CaptureHeader::direction`: the packet leaves through the interface.
pub const CAPTURE_EGRESS: u8 = 1;

/// `CaptureHeader::flags`: `tgid` and `comm` name the task the hook ran in,
/// and the packet was sent by a local socket. The egress hook usually runs
/// in the sender's `sendmsg`; a packet sent later from a kernel timer (a TCP
/// retransmit) names whichever task was running then. Kernels that refuse
/// TC programs the task helpers (Linux 6.1) never set it.
pub const CAPTURE_HAS_TASK: u8 = 1 << 0;
/// `CaptureHeader::flags`: the packet had an 802.1Q/802.1ad tag that the
/// device took out into the sk_buff (VLAN offload): `vlan_tpid` and
/// `vlan_tci` hold it, and the reader puts it back after the MACs.
pub const CAPTURE_HAS_VLAN: u8 = 1 << 1;

/// The `IGNORE` global's bits: packets left out before any copy, as the
/// original's `capture … [include=nd] [ignore=arp]` defines them.
/// Neighbor Discovery: IPv6 with hop limit 255 whose upper layer (after
/// hop-by-hop, routing, destination options and AH headers; never a
/// fragment) is ICMPv6 of type 133 to 137 with code 0.
pub const IGNORE_ND: u8 = 1 << 0;
/// ARP (EtherType 0x0806; there is none on an interface without a link
/// header).
pub const IGNORE_ARP: u8 = 1 << 1;
/// How many IPv6 extension headers the ND test walks before it gives up
/// (and keeps the packet): the original walks any number; real ND has at
/// most a hop-by-hop header.
pub const ND_EXTENSION_HEADERS: usize = 4;

/// The fixed part of a capture record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureHeader {
    /// `bpf_ktime_get_ns()` when the hook ran (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// The interface the hook is attached to.
    pub ifindex: u32,
    /// The packet's length on the wire (`skb->len`, link header included).
    pub orig_len: u32,
    /// How many bytes follow the header (at most the snap length).
    pub cap_len: u32,
    /// Process id (tgid) of the sender; see `CAPTURE_HAS_TASK`.
    pub tgid: u32,
    /// `CAPTURE_INGRESS` or `CAPTURE_EGRESS`.
    pub direction: u8,
    /// `CAPTURE_*` bits.
    pub flags: u8,
    /// The offloaded tag's control information; see `CAPTURE_HAS_VLAN`.
    pub vlan_tci: u16,
    /// Its EtherType (0x8100, 0x88a8), host order.
    pub vlan_tpid: u16,
    pub _pad: [u8; 2],
    /// The sender's command name, NUL-padded; see `CAPTURE_HAS_TASK`.
    pub comm: [u8; 16],
}

/// One ring record: the header and room for `N` packet bytes (one of
/// `SIZE_CLASSES`), of which the first `header.cap_len` are the packet's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CaptureRecord<const N: usize> {
    pub header: CaptureHeader,
    pub data: [u8; N],
}

// The eBPF program zeroes the header 8 bytes at a time.
const _: () = assert!(core::mem::size_of::<CaptureHeader>().is_multiple_of(8));

#[cfg(feature = "user")]
// SAFETY: CaptureHeader is repr(C), Copy, and every bit pattern is valid.
unsafe impl aya::Pod for CaptureHeader {}
