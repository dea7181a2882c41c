//! The fake host answerer's maps and events, as
//! `ebpf-programs/src/bin/fakehost.rs` reads and writes them and
//! `init/src/fakehost/` fills and decodes them.

/// `FakeHostConfig::flags`: answer ICMP / ICMPv6 echo requests.
pub const FAKEHOST_ICMP: u8 = 1 << 0;
/// `FakeHostConfig::flags`: act as a router (NA with R, RA for RS).
pub const FAKEHOST_ROUTER: u8 = 1 << 1;
/// `FakeHostConfig::flags`: the entry is a router's link-local address,
/// answered for NDP only (the RA's source must be link-local, RFC 4861 §6.1.2).
pub const FAKEHOST_ALIAS: u8 = 1 << 2;
/// `FakeHostConfig::flags`: the key is an IPv4 address (`::ffff:a.b.c.d`).
pub const FAKEHOST_V4: u8 = 1 << 3;

/// How many routers one interface has at most (the program's router
/// slots): each answers a Router Solicitation with its own advertisement.
pub const MAX_ROUTERS: u32 = 4;

/// `FakeHostEvent::kind` and the index into `FakeHostCounters::answers`.
pub const ANSWER_ARP: u8 = 0;
/// A Neighbor Advertisement for a solicitation (unicast or multicast).
pub const ANSWER_NA: u8 = 1;
/// An unsolicited NA to ff02::1 for a duplicate address detection probe.
pub const ANSWER_DAD: u8 = 2;
/// An ICMP or ICMPv6 echo reply.
pub const ANSWER_ECHO: u8 = 3;
/// A Router Advertisement for a Router Solicitation.
pub const ANSWER_RA: u8 = 4;
/// How many answer kinds there are.
pub const ANSWER_KINDS: usize = 5;

/// A fake host's hash map key: its address, IPv4 as `::ffff:a.b.c.d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FakeHostKey {
    pub addr: [u8; 16],
}

/// What the program answers for one address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeHostConfig {
    pub mac: [u8; 6],
    /// `FAKEHOST_*` bits.
    pub flags: u8,
    /// Length of `prefix` in an RA's Prefix Information; 0: no prefix option.
    pub prefix_len: u8,
    pub prefix: [u8; 16],
    /// The link-local source of this router's RAs.
    pub router_source: [u8; 16],
}

/// Answers sent for one address, by `ANSWER_*` kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeHostCounters {
    pub answers: [u64; ANSWER_KINDS],
}

/// One answer, for the log line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeHostEvent {
    /// `ANSWER_*`.
    pub kind: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// The asker's MAC (Ethernet source of the request).
    pub asker_mac: [u8; 6],
    /// The fake host's MAC that answered.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The fake host's address (IPv4 in the first 4 bytes).
    pub target: [u8; 16],
    /// The asker's address (IPv4 in the first 4 bytes; `::` for DAD).
    pub asker: [u8; 16],
    /// Answers this CPU made since its previous event without an event of
    /// their own (the program's event budget, `FakeHostBudget`).
    pub skipped: u32,
    pub _pad2: u32,
}

/// A CPU's budget of answer events (a token bucket refilled by jiffies):
/// under a flood most answers make no event, only a count carried by the
/// next one, so neither the program nor the reader pays per answer for
/// log lines that would be suppressed anyway.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeHostBudget {
    pub tokens: u64,
    /// Jiffies at the last refill.
    pub refilled: u64,
    /// Answers without an event since the last event.
    pub skipped: u64,
}

// The eBPF program zeroes a reserved event 8 bytes at a time.
const _: () = assert!(core::mem::size_of::<FakeHostEvent>().is_multiple_of(8));

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all five are repr(C), Copy, and every bit pattern is valid.
    unsafe impl aya::Pod for FakeHostKey {}
    unsafe impl aya::Pod for FakeHostConfig {}
    unsafe impl aya::Pod for FakeHostCounters {}
    unsafe impl aya::Pod for FakeHostEvent {}
    unsafe impl aya::Pod for FakeHostBudget {}
}
