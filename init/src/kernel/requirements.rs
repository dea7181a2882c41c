//! What a capability needs from the kernel, declared by the capability
//! itself (retis's collectors do the same with `can_run`): the config
//! options, what it can say about its backends here, and a quick self-test
//! that proves its eBPF programs load on this kernel. `kconfig` walks the
//! one list of them (in `cmd/`), so a new capability adds its own.

use std::future::Future;
use std::pin::Pin;

/// The part of the kernel an option belongs to: `kconfig GROUP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Tracing,
    Bpf,
    Net,
}

impl Area {
    pub const ALL: [Area; 3] = [Area::Tracing, Area::Bpf, Area::Net];

    pub fn name(self) -> &'static str {
        match self {
            Area::Tracing => "tracing",
            Area::Bpf => "bpf",
            Area::Net => "net",
        }
    }
}

/// A kernel config option and what does not work without it.
pub struct KernelOption {
    pub area: Area,
    pub name: &'static str,
    pub needed_by: &'static str,
    /// Missing only costs speed or convenience.
    pub optional: bool,
}

/// An option that something needs.
pub const fn needs(area: Area, name: &'static str, needed_by: &'static str) -> KernelOption {
    KernelOption {
        area,
        name,
        needed_by,
        optional: false,
    }
}

/// A self-test: a line saying what was proven, or why it failed.
pub type SelfTest = fn() -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>>;

/// One capability's requirements.
pub struct Requirements {
    pub capability: &'static str,
    pub options: &'static [KernelOption],
    /// Which of its backends can run on this kernel, and why not: lines
    /// for `kconfig tracing` (run inside the runtime).
    pub backends: Option<fn() -> String>,
    /// Loads (and where it is quick, runs) its eBPF programs: for
    /// `kconfig bpf`.
    pub self_test: Option<SelfTest>,
}
