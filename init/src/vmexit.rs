//! Hands `poweroff STATUS` to the host through qemu's `isa-debug-exit`
//! device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`): qemu then
//! exits with `(STATUS << 1) | 1`, which `cargo xtask vm` maps back. Only
//! done when the kernel command line has `myinit.debug_exit`, so real
//! hardware's I/O ports are never touched.

/// The I/O port qemu's isa-debug-exit device listens on (xtask passes the same).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Whether the kernel command line has `myinit.debug_exit` (an unattended
/// run: a status must reach the host, a prompt would wait for nobody).
pub fn debug_exit_enabled() -> bool {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline.split_whitespace().any(|w| w == "myinit.debug_exit")
}

pub fn report_status(status: i32) {
    if !debug_exit_enabled() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: ioperm grants this process access to the one port; `out`
    // to qemu's debug-exit device ends the VM.
    unsafe {
        if libc::ioperm(DEBUG_EXIT_PORT as libc::c_ulong, 4, 1) == 0 {
            let value = (status & 0xff) as u32;
            core::arch::asm!("out dx, eax", in("dx") DEBUG_EXIT_PORT, in("eax") value);
        }
    }
}
