//! Network plumbing: TAP devices, netlink (links, addresses, routes,
//! neighbours), AF_PACKET sockets.

pub mod iface;
pub mod netlink;
pub mod netns;
pub mod packet_socket;
pub mod resolve;
pub mod tap;

use crate::kernel::requirements::{needs, Area, Requirements};

/// What the network commands need from the kernel: `tap add`, veth pairs
/// of the tests, `mount -t 9p` of the host's share.
pub const REQUIREMENTS: Requirements = Requirements {
    capability: "net",
    options: &[
        needs(Area::Net, "CONFIG_TUN", "tap"),
        needs(Area::Net, "CONFIG_VETH", "veth pairs"),
        needs(Area::Net, "CONFIG_NET_9P", "mount 9p"),
        needs(Area::Net, "CONFIG_NET_9P_VIRTIO", "mount 9p"),
        needs(Area::Net, "CONFIG_9P_FS", "mount 9p"),
    ],
    backends: None,
    self_test: None,
};
