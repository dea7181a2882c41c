//! Network plumbing: TAP devices, netlink (links, addresses, routes,
//! neighbours), AF_PACKET sockets.

pub mod iface;
pub mod netcat;
pub mod netlink;
pub mod packet_socket;
pub mod ping;
pub mod resolve;
pub mod tap;
