//! Network plumbing: TAP devices, netlink (links, addresses, routes, neighbours).

pub mod iface;
pub mod netcat;
pub mod netlink;
pub mod ping;
pub mod resolve;
pub mod tap;
