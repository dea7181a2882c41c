//! Types shared by the eBPF programs and userspace, one module per eBPF
//! capability (the same names as `ebpf-programs/src/bin/*.rs` and
//! `init/src/*/`). Every type is `#[repr(C)]` so both sides agree on the
//! layout byte for byte. `modules` (std side only) reads kernel module
//! names and `modules.dep` for both the initrd build and `modprobe`.
#![no_std]

#[cfg(feature = "modules")]
extern crate alloc;

pub mod capture;
pub mod droptrace;
pub mod fakehost;

#[cfg(feature = "modules")]
pub mod modules;
