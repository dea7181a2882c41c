//! Network plumbing: TAP devices, netlink (links, addresses, routes, neighbours).

pub mod ioctl;
pub mod tap;
