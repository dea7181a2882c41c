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

/// Whether a file starts as xz, gzip or zstd data does (an ELF module
/// starts with 0x7f "ELF").
fn is_compressed_data(head: &[u8]) -> bool {
    head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
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
    // By the first bytes, not the name: the initrd's `/NAME.ko` links may
    // point at `NAME.ko.xz`.
    let mut magic = [0u8; 6];
    let compressed = match std::os::unix::fs::FileExt::read_at(&file, &mut magic, 0) {
        Ok(n) => is_compressed_data(&magic[..n]),
        Err(_) => false,
    } || myinit_common::modules::is_compressed(&shown);
    let flags = if compressed {
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
