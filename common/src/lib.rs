//! Types shared by the eBPF programs and userspace, one module per eBPF
//! capability (the same names as `ebpf-programs/src/bin/*.rs` and
//! `init/src/*/`). Every type is `#[repr(C)]` so both sides agree on the
//! layout byte for byte.
#![no_std]

pub mod capture;
pub mod droptrace;
