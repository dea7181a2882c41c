//! AF_PACKET sockets that send whole frames (or raw IP packets) on an
//! interface: the kernel transmits them on it, so its peer receives them.

use std::io;

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

/// A send-only AF_PACKET socket (protocol 0: it never receives), non-blocking.
pub struct PacketSender {
    socket: Socket,
}

impl PacketSender {
    pub fn open() -> io::Result<Self> {
        // Non-blocking: senders are async and wait for room themselves.
        let socket = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)?;
        Ok(PacketSender { socket })
    }

    /// Sends `data` on interface `ifindex`; `protocol` (ETH_P_*, host
    /// order) becomes the skb's protocol. `data` holds the link header if
    /// the interface has one.
    pub fn send(&self, ifindex: u32, protocol: u16, data: &[u8]) -> io::Result<usize> {
        self.socket
            .send_to(data, &packet_address(ifindex, protocol))
    }
}

/// The AF_PACKET address of interface `ifindex` and `protocol` (ETH_P_*,
/// host order), to send to or bind to.
pub fn packet_address(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is a sockaddr type of this platform and fits in
    // the storage; all zeros is a valid value of it.
    let ll: &mut libc::sockaddr_ll = unsafe { storage.view_as() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an AF_PACKET address of that length.
    unsafe { SockAddr::new(storage, len) }
}
