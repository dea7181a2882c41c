//! Loading one kernel module file with finit_module(2), shared by `insmod`
//! and `modprobe` so both report failures the same way.

use std::ffi::CString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use thiserror::Error;

/// finit_module's MODULE_INIT_COMPRESSED_FILE (Linux 6.4+): the kernel
/// decompresses the module itself.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{0}: {1}")]
    Open(String, String),
    #[error("parameters must not contain NUL bytes")]
    BadParams,
    /// EEXIST: loaded already, or built into the kernel.
    #[error("{0}: already loaded or built in")]
    AlreadyLoaded(String),
    #[error("{0}: {1}")]
    Kernel(String, &'static str),
}

/// Loads the module in `path` with `params` ("name=value name2=value").
pub fn load(path: &Path, params: &str) -> Result<(), LoadError> {
    let shown = path.display().to_string();
    // O_NONBLOCK: opening a FIFO nobody writes would block for good (and
    // Ctrl-C cannot interrupt an open); regular files ignore the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| LoadError::Open(shown.clone(), crate::util::io_error(&e)))?;
    match file.metadata() {
        Ok(m) if m.is_dir() => return Err(LoadError::Open(shown, "is a directory".into())),
        Ok(m) if !m.is_file() => {
            return Err(LoadError::Open(shown, "not a regular file".into()));
        }
        _ => {}
    }
    let params = CString::new(params).map_err(|_| LoadError::BadParams)?;
    let flags = if myinit_common::modules::is_compressed(&shown) {
        ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    } else {
        ModuleInitFlags::empty()
    };
    finit_module(&file, &params, flags).map_err(|e| match e {
        Errno::EEXIST => LoadError::AlreadyLoaded(shown),
        Errno::ENOEXEC => LoadError::Kernel(shown, "not a module for this kernel"),
        Errno::ENOENT => LoadError::Kernel(
            shown,
            "unknown symbol (load the modules it needs first; see dmesg)",
        ),
        Errno::EPERM => LoadError::Kernel(
            shown,
            "not permitted (root, and module loading not disabled)",
        ),
        e => LoadError::Kernel(shown, e.desc()),
    })
}
