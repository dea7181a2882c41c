//! The TAP registry: devices created by `tap add`, kept open so that later
//! commands (inject, fakehost, capture) can use their file descriptors.
//!
//! A TAP device made without TUNSETPERSIST lives exactly as long as its
//! file descriptor: dropping the registry's fd (`tap del`) removes the
//! interface unless someone still holds a duplicate of the fd.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

#[derive(Default)]
pub struct TapRegistry {
    pub devices: BTreeMap<String, OwnedFd>,
}

impl TapRegistry {
    /// Keeps `fd` as the device NAME; false (and the fd is dropped) if the
    /// name is taken.
    pub fn add(&mut self, name: &str, fd: OwnedFd) -> bool {
        if self.devices.contains_key(name) {
            return false;
        }
        self.devices.insert(name.to_string(), fd);
        true
    }

    /// Takes the device's fd out of the registry; dropping it closes the TAP.
    pub fn remove(&mut self, name: &str) -> Option<OwnedFd> {
        self.devices.remove(name)
    }

    /// The device's fd (non-blocking: fit for tokio's AsyncFd). Use
    /// `try_clone_to_owned()` to keep it beyond the registry lock.
    pub fn get(&self, name: &str) -> Option<BorrowedFd<'_>> {
        self.devices.get(name).map(|fd| fd.as_fd())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.devices.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }
}

// No crate wraps TUNSETIFF at the versions we use (tun crates pull in their
// own async stacks); it is one ioctl. TUNSETIFF is _IOW('T', 202, int) even
// though the kernel reads a whole struct ifreq.
nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);

/// Creates the TAP device NAME (Ethernet frames, no packet-info header)
/// and returns its non-blocking fd. Fails with EBUSY if NAME exists.
pub fn create(name: &str) -> std::io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad interface name (1 to {} bytes)", libc::IFNAMSIZ - 1),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // IFF_TUN_EXCL: never attach to an existing device of that name.
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as libc::c_short;
    // SAFETY: the fd is open and the ifreq lives for the call.
    unsafe { tun_set_iff(std::os::fd::AsRawFd::as_raw_fd(&file), &req) }
        .map_err(std::io::Error::from)?;
    Ok(OwnedFd::from(file))
}
