//! The TAP registry: devices created by `tap add`, kept open so that later
//! commands (inject, fakehost, capture) can use their file descriptors.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

#[derive(Default)]
pub struct TapRegistry {
    pub devices: BTreeMap<String, OwnedFd>,
}
