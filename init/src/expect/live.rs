//! Live expectations: an AF_PACKET socket per watched interface queues
//! what passes (in the kernel, bounded by its receive buffer) from the
//! moment it is armed; `expect IF …` reads that queue and what comes next
//! until the expectation holds or its time runs out. Success returns at
//! once; only `--none` waits the whole window. A capture of the same
//! interface runs beside it unaffected: each socket gets its own copy.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use myinit_packet::jsonl::Direction;
use myinit_packet::layers::LINKTYPE_ETHERNET;
use socket2::{Domain, Socket, Type};

use super::captured::Captured;
use super::spec::PacketSpec;
use crate::filter::FileFilter;
use crate::net::iface;
use crate::net::packet_socket::packet_address;
use crate::state::State;

/// The receive buffer each watch asks for: room for thousands of test
/// packets between `expect arm` and `expect`.
const RCVBUF: usize = 8 << 20;
/// The most packets one `expect` examines, whatever arrives.
const MOST_PACKETS: usize = 100_000;
/// The largest frame read whole (longer ones are cut, and say so).
const FRAME_MAX: usize = 65_536;

/// A socket watching one interface.
struct Watch {
    socket: Socket,
    ifindex: u32,
    linktype: u32,
}

fn watches() -> &'static Mutex<BTreeMap<String, Watch>> {
    static WATCHES: OnceLock<Mutex<BTreeMap<String, Watch>>> = OnceLock::new();
    WATCHES.get_or_init(Default::default)
}

/// The link type packets read on `ifname` have: Ethernet or raw IP.
fn linktype(state: &State, ifname: &str, ifindex: u32) -> anyhow::Result<u32> {
    let arphrd = state.rt.block_on(async {
        let nl = crate::net::netlink::Netlink::open()?;
        anyhow::Ok(nl.link(ifindex).await?.link_type)
    })?;
    myinit_packet::linktype::linktype_of_interface(arphrd).ok_or_else(|| {
        anyhow!("{ifname}: interfaces of ARPHRD type {arphrd} cannot be watched (Ethernet or no link header)")
    })
}

fn open(state: &State, ifname: &str) -> anyhow::Result<Watch> {
    let ifindex = iface::ifindex(ifname)?;
    let linktype = linktype(state, ifname, ifindex)?;
    // Protocol 0 until bound: nothing from other interfaces is queued.
    let socket = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)
        .context("AF_PACKET socket (needs CAP_NET_RAW)")?;
    if socket.set_recv_buffer_size(RCVBUF).is_err() || socket.recv_buffer_size()? < RCVBUF {
        // Past rmem_max: root may force it.
        let size = RCVBUF as libc::c_int;
        // SAFETY: setsockopt with an int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket
        .bind(&packet_address(ifindex, libc::ETH_P_ALL as u16))
        .with_context(|| format!("{ifname}: bind"))?;
    Ok(Watch {
        socket,
        ifindex,
        linktype,
    })
}

/// Starts queueing what passes on `ifname` (again from now, if it was).
pub fn arm(state: &State, ifname: &str) -> anyhow::Result<()> {
    let watch = open(state, ifname)?;
    watches()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(ifname.to_string(), watch);
    Ok(())
}

/// Stops watching `ifname`; false when it was not watched.
pub fn disarm(ifname: &str) -> bool {
    watches()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(ifname)
        .is_some()
}

/// Stops every watch (the interfaces watched, for the message).
pub fn disarm_all() -> Vec<String> {
    let mut all = watches().lock().unwrap_or_else(|p| p.into_inner());
    let names = all.keys().cloned().collect();
    all.clear();
    names
}

/// The watched interfaces.
pub fn armed() -> Vec<String> {
    watches()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect()
}

/// What a live `expect` waits for.
pub struct Expectation {
    pub ifname: String,
    pub direction: Option<Direction>,
    pub filter: Option<FileFilter>,
    pub packet: Option<PacketSpec>,
    /// None: nothing may match (`--none`).
    pub count: Option<usize>,
    pub within: Duration,
    /// Any other packet (noise aside) fails.
    pub only: bool,
}

/// What came while waiting.
pub struct Outcome {
    pub packets: Vec<Captured>,
    pub matching: Vec<usize>,
    /// Packets that are neither matching nor noise.
    pub others: Vec<usize>,
    pub waited: Duration,
    /// Frames longer than what was read.
    pub cut: usize,
}

/// Neighbour and group management the original's capture leaves out:
/// ARP, RARP, IGMP, ICMPv6 ND (133-137) and MLD (130-132, 143).
pub fn is_noise(linktype: u32, frame: &[u8]) -> bool {
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (mut etype, mut at) = if linktype == LINKTYPE_ETHERNET {
        (be16(12), 14)
    } else {
        match frame.first().map(|b| b >> 4) {
            Some(4) => (Some(0x0800), 0),
            Some(6) => (Some(0x86dd), 0),
            _ => return false,
        }
    };
    while matches!(etype, Some(0x8100 | 0x88a8)) {
        etype = be16(at + 2);
        at += 4;
    }
    match etype {
        Some(0x0806 | 0x8035) => true,
        Some(0x0800) => frame.get(at + 9) == Some(&2),
        Some(0x86dd) => {
            let mut next = frame.get(at + 6).copied();
            let mut header = at + 40;
            // Hop-by-hop (MLD's router alert), routing, destination options.
            for _ in 0..4 {
                match next {
                    Some(0 | 43 | 60) => {
                        next = frame.get(header).copied();
                        let len = frame.get(header + 1).map(|&l| (usize::from(l) + 1) * 8);
                        match len {
                            Some(len) => header += len,
                            None => return false,
                        }
                    }
                    _ => break,
                }
            }
            next == Some(58)
                && frame
                    .get(header)
                    .is_some_and(|&t| (130..=137).contains(&t) || t == 143)
        }
        _ => false,
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Reads one queued frame: (direction, bytes, cut), or None when the queue
/// is empty.
fn receive(watch: &Watch, buf: &mut [u8]) -> std::io::Result<Option<(Direction, usize, bool)>> {
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: recvfrom into a buffer and an address of the sizes given.
    let n = unsafe {
        libc::recvfrom(
            watch.socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::WouldBlock => Ok(None),
            std::io::ErrorKind::Interrupted => receive(watch, buf),
            _ => Err(e),
        };
    }
    let direction = if addr.sll_pkttype == libc::PACKET_OUTGOING {
        Direction::Tx
    } else {
        Direction::Rx
    };
    let n = n as usize;
    Ok(Some((direction, n.min(buf.len()), n > buf.len())))
}

/// Waits until `e` holds or its time is up. The interface is armed now if
/// it was not. Packets that arrived since the interface was armed, or
/// since the previous `expect` on it, count; those read are used up.
pub fn wait(
    state: &State,
    e: &Expectation,
    interrupted: &dyn Fn() -> bool,
) -> anyhow::Result<Outcome> {
    if !armed().contains(&e.ifname) {
        arm(state, &e.ifname)?;
    }
    let started = Instant::now();
    let deadline = started + e.within;
    let mut outcome = Outcome {
        packets: Vec::new(),
        matching: Vec::new(),
        others: Vec::new(),
        waited: Duration::ZERO,
        cut: 0,
    };
    let mut filter = e.filter.clone();
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        let guard = watches().lock().unwrap_or_else(|p| p.into_inner());
        let watch = guard
            .get(&e.ifname)
            .ok_or_else(|| anyhow!("{}: no longer watched", e.ifname))?;
        if !iface::index_exists(watch.ifindex) {
            let name = e.ifname.clone();
            drop(guard);
            disarm(&name);
            bail!("{name}: the interface went away while waiting");
        }
        let linktype = watch.linktype;
        // Drain what is queued now.
        let mut drained = false;
        while outcome.packets.len() < MOST_PACKETS {
            let Some((direction, len, cut)) = receive(watch, &mut buf)
                .map_err(|err| anyhow!("{}: read: {}", e.ifname, crate::util::io_error(&err)))?
            else {
                drained = true;
                break;
            };
            if e.direction.is_some_and(|d| d != direction) {
                continue;
            }
            outcome.cut += usize::from(cut);
            let frame = &buf[..len];
            let packet = Captured::from_frame(now_ns(), direction, linktype, frame);
            let index = outcome.packets.len();
            let by_filter = match filter.as_mut() {
                Some(f) => f
                    .matches(linktype, frame)
                    .map_err(|err| anyhow!("filter: {err}"))?,
                None => true,
            };
            let by_layers = e.packet.as_ref().is_none_or(|p| p.matches(&packet));
            let anything = e.filter.is_none() && e.packet.is_none();
            let noise = is_noise(linktype, frame);
            if by_filter && by_layers && !(anything && noise) {
                outcome.matching.push(index);
            } else if !noise {
                outcome.others.push(index);
            }
            outcome.packets.push(packet);
            if e.count.is_some_and(|n| outcome.matching.len() >= n) {
                break;
            }
        }
        let fd = watch.socket.as_raw_fd();
        drop(guard);
        let satisfied = match e.count {
            Some(n) => outcome.matching.len() >= n,
            None => false,
        };
        let failed_early = (e.count.is_none() && !outcome.matching.is_empty())
            || (e.only && !outcome.others.is_empty());
        let now = Instant::now();
        if satisfied || failed_early || now >= deadline || outcome.packets.len() >= MOST_PACKETS {
            outcome.waited = now - started;
            return Ok(outcome);
        }
        if interrupted() {
            return Err(crate::cmd::Interrupted.into());
        }
        if drained {
            // Sleep until a packet comes, the time is up, or 100 ms pass
            // (to see Ctrl-C and an interface that goes away).
            let left = (deadline - now).min(Duration::from_millis(100));
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().max(1) as libc::c_int;
            // SAFETY: one pollfd of a socket we hold open (a watch is only
            // dropped by this thread, the shell's).
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }
}
