//! The fake host answerer (`init/src/fakehost/ebpf.rs` loads this object,
//! one per interface): a TC egress program that turns the kernel's own ARP
//! requests, Neighbor and Router Solicitations and (per host) echo requests
//! to a fake host into that host's answer and hands the answer back to the
//! same interface's ingress, as if it had come from the wire. Nothing else
//! is touched, and what is not its own gets no verdict (`TC_ACT_UNSPEC`,
//! TCX_NEXT): the next program on the hook runs as if this one were not
//! there (`TC_ACT_OK` would end the chain, so a second fake-host owner, a
//! capture or the user's own program attached after it would never see
//! the packet).
//!
//! Echo replies are rewritten in place with incremental checksum updates
//! (the data can be any length). ARP, NA and RA answers are short and fixed
//! in shape, so they are built whole on the stack and written over the
//! request, the packet resized to fit and the ICMPv6 checksum computed.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{__sk_buff, BPF_F_INGRESS, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_UNSPEC},
    helpers::{
        bpf_clone_redirect, bpf_csum_diff, bpf_jiffies64, bpf_redirect, bpf_skb_change_tail,
    },
    macros::{classifier, map},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::TcContext,
};
use myinit_common::fakehost::{
    FakeHostBudget, FakeHostConfig, FakeHostCounters, FakeHostEvent, FakeHostKey, ANSWER_ARP,
    ANSWER_DAD, ANSWER_ECHO, ANSWER_KINDS, ANSWER_NA, ANSWER_RA, FAKEHOST_ALIAS, FAKEHOST_ICMP,
    FAKEHOST_ROUTER, MAX_ROUTERS,
};
use myinit_ebpf::{reserve_zeroed, submit_batched};

/// Fake hosts on this interface by address.
#[map]
static FAKEHOSTS: HashMap<FakeHostKey, FakeHostConfig> = HashMap::with_max_entries(256, 0);

/// Answers per host and CPU (userspace inserts zeroed counters with the
/// host): per CPU, as this target has no 64-bit atomic add.
#[map]
static FAKEHOST_COUNTERS: PerCpuHashMap<FakeHostKey, FakeHostCounters> =
    PerCpuHashMap::with_max_entries(256, 0);

/// The routers that answer Router Solicitations, each in a slot of its
/// own (`FAKEHOST_ROUTER` clear: an empty slot). An RS names no host, so
/// its answerers cannot be found by key.
#[map]
static FAKEHOST_ROUTERS: Array<FakeHostConfig> = Array::with_max_entries(MAX_ROUTERS, 0);

/// One event per answer, for the log lines.
#[map]
static FAKEHOST_EVENTS: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

/// Events the ring could not take, per CPU (index 0).
#[map]
static FAKEHOST_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Each CPU's event budget (index 0); userspace adds the `skipped` left at
/// the end to its suppressed count.
#[map]
static FAKEHOST_BUDGET: PerCpuArray<FakeHostBudget> = PerCpuArray::with_max_entries(1, 0);

/// Events a CPU may make at once, and one more per jiffy (100–1000 a
/// second): well above the 20 log lines a second userspace prints, so the
/// budget only takes away events whose lines would be suppressed there.
const EVENT_BURST: u64 = 64;

/// The reader is woken once per this many bytes of events; between, it polls.
const WAKEUP_BYTES: u64 = 8 << 10;

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV6_LEN: usize = 40;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// A frame built on the stack; 4-byte aligned for `bpf_csum_diff`.
#[repr(C, align(4))]
struct Buf<const N: usize>([u8; N]);

#[inline(always)]
fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

#[inline(always)]
fn v4_key(addr: [u8; 4]) -> FakeHostKey {
    let mut key = FakeHostKey::default();
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    key.addr[12..].copy_from_slice(&addr);
    key
}

#[inline(always)]
fn count(key: &FakeHostKey, kind: u8) {
    if let Some(counters) = FAKEHOST_COUNTERS.get_ptr_mut(key) {
        let i = kind as usize;
        if i < ANSWER_KINDS {
            // SAFETY: this CPU's slot; programs do not migrate mid-run.
            unsafe { (*counters).answers[i] += 1 };
        }
    }
}

#[inline(always)]
fn emit(
    kind: u8,
    ip_version: u8,
    asker_mac: &[u8; 6],
    mac: &[u8; 6],
    target: &[u8; 16],
    asker: &[u8; 16],
) {
    let Some(budget) = FAKEHOST_BUDGET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; programs do not migrate mid-run.
    let budget = unsafe { &mut *budget };
    if budget.tokens == 0 {
        // SAFETY: plain helper call.
        let now = unsafe { bpf_jiffies64() };
        let earned = now.wrapping_sub(budget.refilled);
        if earned == 0 {
            budget.skipped += 1;
            return;
        }
        budget.tokens = if earned < EVENT_BURST {
            earned
        } else {
            EVENT_BURST
        };
        budget.refilled = now;
    }
    budget.tokens -= 1;
    let Some(mut entry) = reserve_zeroed::<FakeHostEvent>(&FAKEHOST_EVENTS, &FAKEHOST_LOST) else {
        // Counted as lost; the skipped ones wait for the next event.
        return;
    };
    // SAFETY: the entry holds a whole zeroed event.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    event.skipped = budget.skipped as u32;
    budget.skipped = 0;
    event.kind = kind;
    event.ip_version = ip_version;
    event.asker_mac = *asker_mac;
    event.mac = *mac;
    event.target = *target;
    event.asker = *asker;
    submit_batched(entry, &FAKEHOST_EVENTS, WAKEUP_BYTES);
}

/// The ICMPv6 checksum of the answer in `frame` (Ethernet, IPv6, then a
/// `body`-byte ICMPv6 message whose checksum field is zero): the pseudo
/// header's addresses and the body are summed from the frame itself by the
/// helper (any length that is a multiple of 4), its length and next header
/// added here. The result is in the byte order of the data: store it as is.
#[inline(always)]
fn icmpv6_checksum(frame: &mut [u8], body: usize) -> u16 {
    let (addresses, rest) = frame[ETH_LEN + 8..].split_at_mut(32);
    // SAFETY: both ranges are stack memory of the given lengths.
    let sum = unsafe {
        let sum = bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            addresses.as_mut_ptr().cast(),
            32,
            0,
        );
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            rest.as_mut_ptr().cast(),
            body as u32,
            sum as u32,
        )
    };
    let mut s = (sum as u64 & 0xffff_ffff)
        + u64::from(u32::from_ne_bytes([0, 0, 0, body as u8]))
        + u64::from(u32::from_ne_bytes([0, 0, 0, IPPROTO_ICMPV6]));
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Sizes the packet to `frame`'s length and writes `frame` over it.
#[inline(always)]
fn store_frame(ctx: &TcContext, frame: &[u8]) -> bool {
    let len = frame.len() as u32;
    // SAFETY: the context is this packet's __sk_buff.
    if ctx.len() != len && unsafe { bpf_skb_change_tail(ctx.skb.skb, len, 0) } != 0 {
        return false;
    }
    // SAFETY: `frame` is stack memory of its own length.
    let stored = unsafe {
        aya_ebpf::helpers::bpf_skb_store_bytes(ctx.skb.skb, 0, frame.as_ptr().cast(), len, 0)
    };
    stored == 0
}

/// Writes `frame` over the packet and redirects it to the interface's
/// ingress.
#[inline(always)]
fn send_back(ctx: &TcContext, frame: &[u8]) -> Option<i32> {
    store_frame(ctx, frame).then(|| redirect(ctx))
}

#[inline(always)]
fn redirect(ctx: &TcContext) -> i32 {
    // SAFETY: the context is this packet's __sk_buff.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: plain helper call. BPF_F_INGRESS: the answer enters the stack
    // as if received; its destination MAC is the device's own (the request's
    // source), so eth_type_trans does not drop it as PACKET_OTHERHOST.
    unsafe { bpf_redirect(ifindex, BPF_F_INGRESS as u64) as i32 }
}

#[inline(always)]
fn host_of(key: &FakeHostKey) -> Option<&'static FakeHostConfig> {
    // SAFETY: the map value stays valid while the program runs.
    unsafe { FAKEHOSTS.get(key) }
}

// Each answer is its own BPF function (inline(never)): the verifier of
// Linux 6.1 counts the stack of every frame on a call chain against 512
// bytes, and one inlined function would hold all their buffers at once.
// They return a plain verdict: a scalar is what a BPF call returns in r0.

#[inline(never)]
fn arp(skb: *mut __sk_buff) -> i32 {
    arp_answer(skb).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn arp_answer(skb: *mut __sk_buff) -> Option<i32> {
    let ctx = TcContext::new(skb);
    // htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request).
    let head: [u8; 8] = ctx.load(ETH_LEN).ok()?;
    if head != [0, 1, 8, 0, 6, 4, 0, 1] {
        return None;
    }
    let mut f = Buf([0u8; 44]);
    let b = &mut f.0;
    // The request's sender (the device) and addresses. (Fixed-size loads:
    // aya's load_bytes gives 6.1's verifier a length that may be zero.)
    let eth_src: [u8; 6] = ctx.load(6).ok()?;
    let sender: [u8; 10] = ctx.load(ETH_LEN + 8).ok()?;
    let tpa: [u8; 4] = ctx.load(ETH_LEN + 24).ok()?;
    b[0..6].copy_from_slice(&eth_src);
    b[32..42].copy_from_slice(&sender);
    b[28..32].copy_from_slice(&tpa);
    let key = v4_key(tpa);
    let host = host_of(&key)?;
    b[6..12].copy_from_slice(&host.mac);
    b[12..14].copy_from_slice(&be16(ETH_P_ARP));
    b[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    b[22..28].copy_from_slice(&host.mac);
    count(&key, ANSWER_ARP);
    let mut target = [0u8; 16];
    target[..4].copy_from_slice(&tpa);
    let mut asker = [0u8; 16];
    asker[..4].copy_from_slice(&b[38..42]);
    let sha = [b[32], b[33], b[34], b[35], b[36], b[37]];
    emit(ANSWER_ARP, 4, &sha, &host.mac, &target, &asker);
    send_back(&ctx, &f.0[..42])
}

#[inline(never)]
fn echo4(skb: *mut __sk_buff) -> i32 {
    echo4_answer(skb).unwrap_or(TC_ACT_OK as i32)
}

/// Bytes an echo answer reads and writes: Ethernet, the longest IPv4
/// header and the ICMP header (IPv6: its fixed header).
/// The TTL / hop limit of echo replies (Linux's default).
const REPLY_TTL: u8 = 64;
const ECHO4_HEAD: u32 = (ETH_LEN + 60 + 8) as u32;
const ECHO6_HEAD: u32 = (ETH_LEN + IPV6_LEN + 8) as u32;

/// Makes the first `head` bytes (or the whole packet, if shorter) linear
/// and writable, for direct access: a packet from a PACKET_TX_RING sender
/// (trafgen) holds all but its Ethernet header in pages, where every
/// `bpf_skb_load_bytes` was a copy. Gives the data and its end: bounds are
/// checked as `p + n > end` on the pointers, the form the verifier learns
/// a packet range from.
#[inline(always)]
fn pull_head(ctx: &TcContext, head: u32) -> Option<(*mut u8, usize)> {
    let len = ctx.len();
    ctx.pull_data(if len < head { len } else { head }).ok()?;
    Some((ctx.data() as *mut u8, ctx.data_end()))
}

/// Swaps the Ethernet addresses (the answer goes to the asker, from the
/// fake host) and the `n`-byte addresses at `src`/`src + n`; gives the
/// asker's MAC. `p` must hold `src + 2 * n` bytes.
///
/// # Safety
/// `p` points at the packet's linear data of at least that length.
#[inline(always)]
unsafe fn swap_addresses<const N: usize>(
    p: *mut u8,
    mac: &[u8; 6],
    src: usize,
) -> ([u8; 6], [u8; N], [u8; N]) {
    // SAFETY: in bounds as the caller checked; packet data has no alignment.
    unsafe {
        let eth_src = p.add(6).cast::<[u8; 6]>().read_unaligned();
        let a = p.add(src).cast::<[u8; N]>().read_unaligned();
        let b = p.add(src + N).cast::<[u8; N]>().read_unaligned();
        p.cast::<[u8; 6]>().write_unaligned(eth_src);
        p.add(6).cast::<[u8; 6]>().write_unaligned(*mac);
        p.add(src).cast::<[u8; N]>().write_unaligned(b);
        p.add(src + N).cast::<[u8; N]>().write_unaligned(a);
        (eth_src, a, b)
    }
}

#[inline(always)]
fn echo4_answer(skb: *mut __sk_buff) -> Option<i32> {
    let ctx = TcContext::new(skb);
    let (p, end) = pull_head(&ctx, ECHO4_HEAD)?;
    if p as usize + ETH_LEN + 20 + 8 > end {
        return None;
    }
    // SAFETY: the first 42 bytes are there (checked above).
    let (vhl, frag, ttl, proto) = unsafe {
        (
            *p.add(ETH_LEN),
            [*p.add(ETH_LEN + 6), *p.add(ETH_LEN + 7)],
            *p.add(ETH_LEN + 8),
            *p.add(ETH_LEN + 9),
        )
    };
    let ihl = ((vhl & 0xf) as usize) * 4;
    // Fragments are not reassembled here: only whole datagrams.
    if vhl >> 4 != 4 || ihl < 20 || proto != IPPROTO_ICMP || (frag[0] & 0x3f) != 0 || frag[1] != 0 {
        return None;
    }
    let icmp = ETH_LEN + ihl;
    if p as usize + icmp + 8 > end {
        return None;
    }
    // SAFETY: the ICMP header is there (checked above).
    let type_code = unsafe { p.add(icmp).cast::<u16>().read_unaligned() };
    // Type 8 (echo request), code 0, as the bytes are in memory.
    if type_code != u16::from_ne_bytes([8, 0]) {
        return None;
    }
    // SAFETY: the IPv4 header is there.
    let dst = unsafe { p.add(ETH_LEN + 16).cast::<[u8; 4]>().read_unaligned() };
    let key = v4_key(dst);
    let host = host_of(&key)?;
    if host.flags & FAKEHOST_ICMP == 0 {
        return None;
    }
    let reply = u16::from_ne_bytes([0, 0]);
    // Swapped addresses leave the IPv4 header checksum as it is (a sum
    // does not care about order), and ICMPv4 has no pseudo-header: only
    // the type word changes the ICMP checksum.
    // The host's own TTL, not the request's: the header checksum follows
    // the word that holds it.
    let (ttl_word, reply_ttl_word) = (
        u16::from_ne_bytes([ttl, proto]),
        u16::from_ne_bytes([REPLY_TTL, proto]),
    );
    // SAFETY: both headers are there (checked above).
    let (eth_src, src, _) = unsafe {
        p.add(icmp).cast::<u16>().write_unaligned(reply);
        *p.add(ETH_LEN + 8) = REPLY_TTL;
        swap_addresses::<4>(p, &host.mac, ETH_LEN + 12)
    };
    ctx.l3_csum_replace(ETH_LEN + 10, ttl_word as u64, reply_ttl_word as u64, 2)
        .ok()?;
    // The helper leaves a CHECKSUM_PARTIAL checksum alone: the stack
    // trusts those on receive.
    ctx.l4_csum_replace(icmp + 2, type_code as u64, reply as u64, 2)
        .ok()?;
    count(&key, ANSWER_ECHO);
    let mut target = [0u8; 16];
    target[..4].copy_from_slice(&dst);
    let mut asker = [0u8; 16];
    asker[..4].copy_from_slice(&src);
    emit(ANSWER_ECHO, 4, &eth_src, &host.mac, &target, &asker);
    Some(redirect(&ctx))
}

#[inline(never)]
fn echo6(skb: *mut __sk_buff) -> i32 {
    echo6_answer(skb).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn echo6_answer(skb: *mut __sk_buff) -> Option<i32> {
    let ctx = TcContext::new(skb);
    let (p, end) = pull_head(&ctx, ECHO6_HEAD)?;
    let icmp = ETH_LEN + IPV6_LEN;
    if p as usize + icmp + 8 > end {
        return None;
    }
    // SAFETY: the IPv6 and ICMPv6 headers are there (checked above).
    let (type_code, dst) = unsafe {
        (
            p.add(icmp).cast::<u16>().read_unaligned(),
            p.add(ETH_LEN + 24).cast::<[u8; 16]>().read_unaligned(),
        )
    };
    if type_code != u16::from_ne_bytes([128, 0]) {
        return None;
    }
    let key = FakeHostKey { addr: dst };
    let host = host_of(&key)?;
    if host.flags & FAKEHOST_ICMP == 0 || host.flags & FAKEHOST_ALIAS != 0 {
        return None;
    }
    let reply = u16::from_ne_bytes([129, 0]);
    // The pseudo-header holds both addresses: swapping them keeps its sum,
    // so again only the type word changes the checksum.
    // SAFETY: both headers are there (checked above). The hop limit is
    // in no checksum.
    let (eth_src, src, _) = unsafe {
        p.add(icmp).cast::<u16>().write_unaligned(reply);
        *p.add(ETH_LEN + 7) = REPLY_TTL;
        swap_addresses::<16>(p, &host.mac, ETH_LEN + 8)
    };
    ctx.l4_csum_replace(icmp + 2, type_code as u64, reply as u64, 2)
        .ok()?;
    count(&key, ANSWER_ECHO);
    emit(ANSWER_ECHO, 6, &eth_src, &host.mac, &dst, &src);
    Some(redirect(&ctx))
}

/// The Ethernet and IPv6 headers of an NDP answer (hop limit 255); the
/// IPv6 destination is written by the caller.
#[inline(always)]
fn ndp_headers(b: &mut [u8], eth_dst: &[u8; 6], mac: &[u8; 6], src: &[u8; 16], len: u8) {
    b[0..6].copy_from_slice(eth_dst);
    b[6..12].copy_from_slice(mac);
    b[12..14].copy_from_slice(&be16(ETH_P_IPV6));
    b[14..18].copy_from_slice(&[0x60, 0, 0, 0]);
    b[18..20].copy_from_slice(&[0, len]);
    b[20] = IPPROTO_ICMPV6;
    b[21] = 255;
    b[22..38].copy_from_slice(src);
}

const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const NDP: usize = ETH_LEN + IPV6_LEN;

#[inline(never)]
fn neighbor_solicitation(skb: *mut __sk_buff) -> i32 {
    neighbor_solicitation_answer(skb).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn neighbor_solicitation_answer(skb: *mut __sk_buff) -> Option<i32> {
    let ctx = TcContext::new(skb);
    let hop_limit: u8 = ctx.load(ETH_LEN + 7).ok()?;
    let code: u8 = ctx.load(NDP + 1).ok()?;
    if hop_limit != 255 || code != 0 {
        return None;
    }
    let target: [u8; 16] = ctx.load(NDP + 8).ok()?;
    let key = FakeHostKey { addr: target };
    let host = host_of(&key)?;
    let src: [u8; 16] = ctx.load(ETH_LEN + 8).ok()?;
    let eth_src: [u8; 6] = ctx.load(6).ok()?;
    // A duplicate address detection probe comes from `::`; the answer then
    // goes to all nodes, unsolicited (RFC 4861 §7.2.4).
    let dad = src == [0u8; 16];
    const BODY: usize = 32;
    let mut f = Buf([0u8; NDP + BODY + 2]);
    let b = &mut f.0;
    ndp_headers(
        b,
        if dad { &ALL_NODES_MAC } else { &eth_src },
        &host.mac,
        &target,
        BODY as u8,
    );
    b[38..54].copy_from_slice(if dad { &ALL_NODES } else { &src });
    let na = &mut b[NDP..NDP + BODY];
    na[0] = 136;
    let mut flags = 0x20; // Override
    if !dad {
        flags |= 0x40; // Solicited
    }
    if host.flags & FAKEHOST_ROUTER != 0 {
        flags |= 0x80;
    }
    na[4] = flags;
    na[8..24].copy_from_slice(&target);
    na[24] = 2; // Target Link-Layer Address, 1 x 8 bytes
    na[25] = 1;
    na[26..32].copy_from_slice(&host.mac);
    let sum = icmpv6_checksum(b, BODY);
    b[NDP + 2..NDP + 4].copy_from_slice(&sum.to_ne_bytes());
    let kind = if dad { ANSWER_DAD } else { ANSWER_NA };
    count(&key, kind);
    emit(kind, 6, &eth_src, &host.mac, &target, &src);
    send_back(&ctx, &f.0[..NDP + BODY])
}

#[inline(never)]
fn router_solicitation(skb: *mut __sk_buff) -> i32 {
    router_solicitation_answer(skb).unwrap_or(TC_ACT_OK as i32)
}

/// Who sent a Router Solicitation, read before any answer is written over it.
#[repr(C)]
struct Asker {
    src: [u8; 16],
    eth_src: [u8; 6],
}

/// Every router answers with its own Router Advertisement: each but the
/// last is written over the packet and a copy handed to the ingress
/// (`bpf_clone_redirect`); the last takes the packet itself.
#[inline(always)]
fn router_solicitation_answer(skb: *mut __sk_buff) -> Option<i32> {
    let ctx = TcContext::new(skb);
    let hop_limit: u8 = ctx.load(ETH_LEN + 7).ok()?;
    let code: u8 = ctx.load(NDP + 1).ok()?;
    if hop_limit != 255 || code != 0 {
        return None;
    }
    let asker = Asker {
        src: ctx.load(ETH_LEN + 8).ok()?,
        eth_src: ctx.load(6).ok()?,
    };
    let is_router = |slot: u32| {
        FAKEHOST_ROUTERS
            .get(slot)
            .is_some_and(|h| h.flags & FAKEHOST_ROUTER != 0)
    };
    let mut last = None;
    for slot in 0..MAX_ROUTERS {
        if is_router(slot) {
            last = Some(slot);
        }
    }
    let last = last?;
    for slot in 0..MAX_ROUTERS {
        if !is_router(slot) {
            continue;
        }
        if write_ra(skb, slot, &asker) != 0 {
            return None;
        }
        // SAFETY: the context is this packet's __sk_buff.
        let ifindex = unsafe { (*skb).ifindex };
        if slot == last {
            return Some(redirect(&ctx));
        }
        // SAFETY: plain helper call; the packet stays ours for the next.
        unsafe { bpf_clone_redirect(skb, ifindex, BPF_F_INGRESS as u64) };
    }
    None
}

/// Writes the Router Advertisement of the router in `slot` to `asker` over
/// the packet; 0 when written.
#[inline(never)]
fn write_ra(skb: *mut __sk_buff, slot: u32, asker: &Asker) -> i64 {
    let ctx = TcContext::new(skb);
    let Some(host) = FAKEHOST_ROUTERS.get(slot) else {
        return -1;
    };
    let unspecified = asker.src == [0u8; 16];
    let with_prefix = host.prefix_len != 0;
    const BODY: usize = 56;
    let body = if with_prefix { BODY } else { 24 };
    let mut f = Buf([0u8; NDP + BODY + 2]);
    let b = &mut f.0;
    let eth_dst = if unspecified {
        &ALL_NODES_MAC
    } else {
        &asker.eth_src
    };
    ndp_headers(b, eth_dst, &host.mac, &host.router_source, body as u8);
    b[38..54].copy_from_slice(if unspecified { &ALL_NODES } else { &asker.src });
    let ra = &mut b[NDP..NDP + BODY];
    ra[0] = 134;
    ra[4] = 64; // current hop limit
    ra[6..8].copy_from_slice(&be16(1800)); // router lifetime (s)
    ra[16] = 1; // Source Link-Layer Address
    ra[17] = 1;
    ra[18..24].copy_from_slice(&host.mac);
    if with_prefix {
        ra[24] = 3; // Prefix Information, 4 x 8 bytes
        ra[25] = 4;
        ra[26] = host.prefix_len;
        ra[27] = 0xc0; // on-link, autonomous
        ra[28..32].copy_from_slice(&86400u32.to_be_bytes());
        ra[32..36].copy_from_slice(&14400u32.to_be_bytes());
        ra[40..56].copy_from_slice(&host.prefix);
    }
    let key = FakeHostKey {
        addr: host.router_source,
    };
    count(&key, ANSWER_RA);
    emit(
        ANSWER_RA,
        6,
        &asker.eth_src,
        &host.mac,
        &host.router_source,
        &asker.src,
    );
    let len = if with_prefix { NDP + BODY } else { NDP + 24 };
    let sum = icmpv6_checksum(b, len - NDP);
    b[NDP + 2..NDP + 4].copy_from_slice(&sum.to_ne_bytes());
    if store_frame(&ctx, &f.0[..len]) {
        0
    } else {
        -1
    }
}

#[inline(never)]
fn router_leaving(skb: *mut __sk_buff) -> i32 {
    router_leaving_answer(skb).unwrap_or(TC_ACT_OK as i32)
}

/// The fake router's last Router Advertisement (lifetime 0), which
/// userspace sends out through the interface as the router goes: handed to
/// the interface's ingress, as if the router had sent it from the far side.
/// Only an RA from the router's own MAC and link-local source is taken.
#[inline(always)]
fn router_leaving_answer(skb: *mut __sk_buff) -> Option<i32> {
    let ctx = TcContext::new(skb);
    let eth_src: [u8; 6] = ctx.load(6).ok()?;
    let src: [u8; 16] = ctx.load(ETH_LEN + 8).ok()?;
    for slot in 0..MAX_ROUTERS {
        if let Some(host) = FAKEHOST_ROUTERS.get(slot) {
            if host.flags & FAKEHOST_ROUTER != 0 && eth_src == host.mac && src == host.router_source
            {
                return Some(redirect(&ctx));
            }
        }
    }
    None
}

/// Requests leaving through the interface (TC egress).
#[classifier]
pub fn fakehost_egress(ctx: TcContext) -> i32 {
    let Ok(ethertype) = ctx.load::<[u8; 2]>(12) else {
        return TC_ACT_UNSPEC;
    };
    let skb = ctx.skb.skb;
    let verdict = match u16::from_be_bytes(ethertype) {
        ETH_P_ARP => arp(skb),
        // Only ICMP is pulled and looked at (one byte loaded first).
        ETH_P_IP => match ctx.load::<u8>(ETH_LEN + 9) {
            Ok(IPPROTO_ICMP) => echo4(skb),
            _ => TC_ACT_OK as i32,
        },
        ETH_P_IPV6 => match (
            ctx.load::<u8>(ETH_LEN + 6),
            ctx.load::<u8>(ETH_LEN + IPV6_LEN),
        ) {
            (Ok(IPPROTO_ICMPV6), Ok(128)) => echo6(skb),
            (Ok(IPPROTO_ICMPV6), Ok(133)) => router_solicitation(skb),
            (Ok(IPPROTO_ICMPV6), Ok(134)) => router_leaving(skb),
            (Ok(IPPROTO_ICMPV6), Ok(135)) => neighbor_solicitation(skb),
            _ => TC_ACT_OK as i32,
        },
        _ => TC_ACT_OK as i32,
    };
    if verdict == TC_ACT_REDIRECT as i32 {
        verdict
    } else {
        TC_ACT_UNSPEC
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
