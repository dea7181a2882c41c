//! The AF_PACKET backend: a `TPACKET_V3` receive ring mapped into our
//! memory. The kernel fills fixed blocks with packets and hands a block
//! over when it is full or its short timeout passes (so an interactive
//! capture shows packets at once), wakes the socket, and counts what it
//! could not place (`PACKET_STATISTICS`). Direction comes from each
//! packet's `sll_pkttype`.
//!
//! Written on libc and socket2 rather than a packet crate: pnet's datalink
//! channel reads with one recvfrom (a copy and a syscall) per packet, the
//! cost a mapped ring exists to avoid, and no well-kept crate maps one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::packet::pcap::Direction;

/// One ring block: 1 MiB holds ~700 full-size frames or ~10,000 small ones.
const BLOCK_SIZE: u32 = 1 << 20;
/// Blocks in the ring: 8 MiB in all, the memory one capture may pin.
const BLOCKS: u32 = 8;
/// How long the kernel fills a block before handing it over anyway (ms).
const BLOCK_TIMEOUT_MS: u32 = 10;
/// The frame size the kernel checks the request against (TPACKET_V3
/// packs packets of any size into blocks; this only has to be valid).
const FRAME_SIZE: u32 = 2048;
/// How long `stop_new` waits for the block being filled to be handed over.
const STOP_WAIT: Duration = Duration::from_millis(200);

const ETH_P_ALL: u16 = 0x0003;

/// A packet in the ring, borrowed until the next call.
pub struct RingPacket<'a> {
    pub timestamp_ns: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
    pub direction: Direction,
    /// An offloaded VLAN tag (TPID, TCI), not in `data`.
    pub vlan: Option<(u16, u16)>,
}

/// A bound AF_PACKET socket with its mapped TPACKET_V3 ring.
pub struct PacketRing {
    socket: AsyncFd<OwnedFd>,
    ring: *mut u8,
    ring_len: usize,
    /// The oldest block not handed back to the kernel.
    block: u32,
    /// Inside `block`: packets left and where the next one starts.
    in_block: bool,
    left: u32,
    offset: usize,
    /// Packets the kernel dropped (PACKET_STATISTICS resets on each read).
    drops: u64,
}

// SAFETY: the mapping is owned by this value alone and only touched
// through `&mut self`; the kernel's side is synchronised by block_status.
unsafe impl Send for PacketRing {}

fn setsockopt<T>(fd: &impl AsRawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches a classic BPF socket filter: the number it returns is how many
/// bytes of a packet the kernel copies into the ring (0: none, the packet
/// is not queued at all).
fn attach_filter(fd: &impl AsRawFd, filter: &[libc::sock_filter]) -> io::Result<()> {
    let mut filter = filter.to_vec();
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?,
        filter: filter.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
}

/// The filter that takes nothing.
fn nothing() -> [libc::sock_filter; 1] {
    [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }]
}

impl PacketRing {
    /// Opens the ring on interface `ifindex`; `filter` (a classic BPF
    /// socket filter) says how many bytes of each packet to keep, 0 for
    /// none. Once it returns, packets are being captured. Must run inside
    /// the tokio runtime.
    pub fn open(ifindex: u32, filter: &[libc::sock_filter]) -> io::Result<Self> {
        // Protocol 0: no packet arrives until the ring is ready and bound.
        let socket = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)?;
        let version = libc::tpacket_versions::TPACKET_V3 as i32;
        setsockopt(&socket, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        attach_filter(&socket, filter)?;
        let request = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCKS,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCKS,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&socket, libc::SOL_PACKET, libc::PACKET_RX_RING, &request)?;
        let ring_len = (BLOCK_SIZE * BLOCKS) as usize;
        // SAFETY: mapping the ring the socket just set up, as packet(7) says.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                socket.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let fd: OwnedFd = socket.into();
        // SAFETY: the OwnedFd moves into the AsyncFd, so the fd stays open
        // for as long as it is registered.
        let registered =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
        let socket = registered.inspect_err(|_| {
            // SAFETY: the mapping made above, not used elsewhere.
            unsafe { libc::munmap(ring, ring_len) };
        })?;
        let mut this = PacketRing {
            socket,
            ring: ring.cast(),
            ring_len,
            block: 0,
            in_block: false,
            left: 0,
            offset: 0,
            drops: 0,
        };
        let socket = socket2::SockRef::from(this.socket.get_ref());
        socket.bind(&crate::net::packet_socket::packet_address(
            ifindex, ETH_P_ALL,
        ))?;
        // Whatever was counted before the bind is not this capture's.
        this.drops = 0;
        let _ = this.read_drops();
        this.drops = 0;
        Ok(this)
    }

    fn block_ptr(&self, block: u32) -> *mut libc::tpacket_block_desc {
        // SAFETY: block < BLOCKS, so the offset stays inside the mapping.
        unsafe { self.ring.add((block * BLOCK_SIZE) as usize).cast() }
    }

    fn status(&self, block: u32) -> &AtomicU32 {
        // SAFETY: block_status is an aligned u32 inside the mapping that
        // the kernel and we hand back and forth; atomics order the rest.
        unsafe { AtomicU32::from_ptr(&raw mut (*self.block_ptr(block)).hdr.bh1.block_status) }
    }

    fn user_owns(&self, block: u32) -> bool {
        self.status(block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    fn release(&mut self) {
        self.status(self.block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % BLOCKS;
        self.in_block = false;
    }

    /// Waits until the kernel may have handed over a block.
    pub async fn ready(&mut self) {
        if self.user_owns(self.block) {
            return;
        }
        let timeout = Duration::from_millis(u64::from(BLOCK_TIMEOUT_MS) * 2);
        if let Ok(Ok(mut guard)) = tokio::time::timeout(timeout, self.socket.readable()).await {
            guard.clear_ready();
        }
    }

    /// Hands at most `max` packets to `f`, oldest first; returns how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(RingPacket<'_>)) -> usize {
        let mut taken = 0;
        while taken < max {
            if !self.in_block {
                if !self.user_owns(self.block) {
                    break;
                }
                // SAFETY: the block is ours (TP_STATUS_USER, acquired).
                let h = unsafe { &(*self.block_ptr(self.block)).hdr.bh1 };
                self.left = h.num_pkts;
                self.offset = h.offset_to_first_pkt as usize;
                self.in_block = true;
            }
            if self.left == 0 {
                self.release();
                continue;
            }
            let block_start = (self.block * BLOCK_SIZE) as usize;
            let header_len = std::mem::size_of::<libc::tpacket3_hdr>();
            // The kernel wrote these offsets; checked anyway so a bad one
            // ends the block instead of reading outside it.
            if self.offset + header_len > BLOCK_SIZE as usize {
                self.release();
                continue;
            }
            // SAFETY: the header lies inside the block (checked above).
            let hdr: libc::tpacket3_hdr = unsafe {
                std::ptr::read_unaligned(self.ring.add(block_start + self.offset).cast())
            };
            let sll_at = self.offset + tpacket_align(header_len);
            let data_at = self.offset + usize::from(hdr.tp_mac);
            let data_len = hdr.tp_snaplen as usize;
            if sll_at + std::mem::size_of::<libc::sockaddr_ll>() > BLOCK_SIZE as usize
                || data_at + data_len > BLOCK_SIZE as usize
            {
                self.release();
                continue;
            }
            // SAFETY: both lie inside the block (checked above).
            let sll: libc::sockaddr_ll =
                unsafe { std::ptr::read_unaligned(self.ring.add(block_start + sll_at).cast()) };
            let data = unsafe {
                std::slice::from_raw_parts(self.ring.add(block_start + data_at), data_len)
            };
            f(RingPacket {
                timestamp_ns: u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec),
                orig_len: hdr.tp_len,
                data,
                direction: if sll.sll_pkttype == libc::PACKET_OUTGOING {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                vlan: (hdr.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                    let tpid = if hdr.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        hdr.hv1.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    (tpid, hdr.hv1.tp_vlan_tci as u16)
                }),
            });
            taken += 1;
            self.left -= 1;
            self.offset += hdr.tp_next_offset as usize;
            if self.left == 0 {
                self.release();
            }
        }
        // Reads of packet bytes are done before the kernel may reuse them.
        fence(Ordering::Release);
        taken
    }

    /// Packets the kernel could not put in the ring since the bind.
    pub fn read_drops(&mut self) -> u64 {
        let mut stats = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `stats` is a tpacket_stats_v3 of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.socket.get_ref().as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &mut len,
            )
        };
        if r == 0 {
            // The kernel resets its counters on each read.
            self.drops += u64::from(stats.tp_drops);
        }
        self.drops
    }

    /// Takes no new packets (a filter that accepts none: binding to
    /// protocol 0 would keep the current protocol, packet(7)), then waits,
    /// at most `STOP_WAIT`, for the kernel to hand over the block it was
    /// filling, so what it captured can still be read.
    pub fn stop_new(&mut self) {
        let _ = attach_filter(self.socket.get_ref(), &nothing());
        let deadline = Instant::now() + STOP_WAIT;
        // The block being filled is the first one still the kernel's.
        let filling = (0..BLOCKS)
            .map(|i| (self.block + i) % BLOCKS)
            .find(|&b| !self.user_owns(b));
        let Some(filling) = filling else {
            return;
        };
        while Instant::now() < deadline && !self.user_owns(filling) {
            // SAFETY: num_pkts of a block the kernel owns: a racy read of
            // a u32, only to learn whether the block is empty.
            let packets = unsafe {
                std::ptr::read_volatile(&raw const (*self.block_ptr(filling)).hdr.bh1.num_pkts)
            };
            if packets == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn tpacket_align(len: usize) -> usize {
    (len + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own in a new network namespace with
    /// `lo` up (the namespace is the thread's; the test's others keep theirs).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare changes only this thread's namespaces.
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                0,
                "unshare: {}",
                io::Error::last_os_error()
            );
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip");
            assert!(up.success());
            f()
        })
        .join()
        .unwrap()
    }

    /// `n` UDP datagrams through lo to a bound socket (a closed port
    /// would add an ICMP error for each).
    fn send(n: usize) {
        let to = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..n {
            socket.send_to(b"ping", to.local_addr().unwrap()).unwrap();
        }
    }

    #[test]
    fn stop_new_takes_no_more_packets_but_keeps_those_queued() {
        let (before, after) = in_new_netns(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _guard = rt.enter();
            let lo = crate::net::iface::ifindex("lo").unwrap();
            let keep_all = super::super::ignore::Ignore {
                nd: false,
                arp: false,
            };
            let mut ring = PacketRing::open(lo, &keep_all.socket_filter(true, 128, None)).unwrap();
            let count = |ring: &mut PacketRing| {
                let mut n = 0;
                while ring.drain(1000, |_| n += 1) > 0 {}
                n
            };
            send(10);
            // Each packet sent on lo is seen leaving and arriving.
            ring.stop_new();
            let before = count(&mut ring);
            send(10);
            std::thread::sleep(Duration::from_millis(3 * u64::from(BLOCK_TIMEOUT_MS)));
            (before, count(&mut ring))
        });
        assert_eq!(before, 20, "queued before stop_new");
        assert_eq!(after, 0, "taken after stop_new");
    }
}
