//! The drop tracer: why did the kernel free this packet? Two backends
//! behind the same commands: eBPF (`tp_btf/kfree_skb`, else the classic
//! `skb:kfree_skb` tracepoint) and ftrace text. Kernel facts (reason names,
//! struct offsets, tracepoint layout) are read from the running kernel's
//! BTF and tracefs, never built in.

pub mod ebpf;
pub mod event;
pub mod files;
pub mod ftrace;
pub mod job;
pub mod report;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use crate::kernel::btf::{BtfError, KernelBtf};
use crate::kernel::requirements::{needs, Area, KernelOption, Requirements};
use crate::kernel::tracefs;
use ebpf::Hook;
use ebpf::{DropHook, DropTracer, SkbOffsets};
use event::ReasonNames;

/// What the running kernel offers the drop tracer, found by capability
/// (does the BTF have this type, this tracepoint), not by version.
pub struct KernelInfo {
    /// Reason names from BTF (empty when the kernel has no BTF).
    pub reasons: ReasonNames,
    /// `sk_buff`/`net_device` member offsets, when the BTF has them all.
    pub offsets: Option<SkbOffsets>,
    /// Arguments of the BTF tracepoint `kfree_skb`, when it exists.
    pub tp_btf_args: Option<usize>,
    /// Why BTF is unusable, if it is.
    pub btf_error: Option<String>,
}

impl KernelInfo {
    pub fn probe(btf: &Result<Arc<KernelBtf>, BtfError>) -> Self {
        match btf {
            Ok(btf) => KernelInfo {
                reasons: ReasonNames::from_btf(&btf.types).unwrap_or_default(),
                offsets: SkbOffsets::from_btf(&btf.types),
                tp_btf_args: btf.types.tracepoint_args("kfree_skb"),
                btf_error: None,
            },
            Err(e) => KernelInfo {
                reasons: ReasonNames::default(),
                offsets: None,
                tp_btf_args: None,
                btf_error: Some(format!("{e:#}")),
            },
        }
    }

    /// One line for `kconfig` and `droptrace start`.
    pub fn describe(&self) -> String {
        if let Some(e) = &self.btf_error {
            return format!("no kernel BTF ({e}): classic tracepoint, reasons from its format file, no packet summary");
        }
        let hook = match self.tp_btf_args {
            Some(n) if n >= 3 => format!("tp_btf/kfree_skb ({n} arguments)"),
            Some(n) => {
                format!("tp_btf/kfree_skb has only {n} arguments (no reason): classic tracepoint")
            }
            None => "no tp_btf/kfree_skb in BTF: classic tracepoint".into(),
        };
        format!(
            "{hook}; {} drop reasons from BTF; packet summary {}",
            self.reasons.len(),
            if self.offsets.is_some() {
                "from BTF offsets"
            } else {
                "unavailable (sk_buff members missing from BTF)"
            }
        )
    }
}

/// The running kernel's reason names, to check `--reason` against: from
/// BTF, else the format file; empty (nothing to check against) when
/// neither can be read.
pub fn reason_names() -> ReasonNames {
    if let Ok(btf) = KernelBtf::get() {
        if let Some(names) = ReasonNames::from_btf(&btf.types).filter(|n| !n.is_empty()) {
            return names;
        }
    }
    tracefs::dir()
        .map(|dir| format_reasons(&dir))
        .unwrap_or_default()
}

/// Reason names from the kfree_skb format file's `__print_symbolic` table.
pub fn format_reasons(tracefs: &Path) -> ReasonNames {
    let format =
        std::fs::read_to_string(tracefs.join("events/skb/kfree_skb/format")).unwrap_or_default();
    ReasonNames::from_format(&format)
}

/// Who needs the eBPF basics (the option is listed once, here).
const EBPF_BACKENDS: &str = "droptrace, capture, fakehost (eBPF backends)";

/// What the drop tracer needs from the kernel.
pub const REQUIREMENTS: Requirements = Requirements {
    capability: "droptrace",
    options: &[
        needs(Area::Tracing, "CONFIG_FTRACE", "droptrace"),
        needs(Area::Tracing, "CONFIG_EVENT_TRACING", "droptrace"),
        needs(
            Area::Tracing,
            "CONFIG_DEBUG_INFO_BTF",
            "droptrace (drop reasons, offsets)",
        ),
        needs(Area::Bpf, "CONFIG_BPF", EBPF_BACKENDS),
        needs(Area::Bpf, "CONFIG_BPF_SYSCALL", EBPF_BACKENDS),
        KernelOption {
            area: Area::Bpf,
            name: "CONFIG_BPF_JIT",
            needed_by: "speed only (programs run interpreted)",
            optional: true,
        },
        needs(Area::Bpf, "CONFIG_BPF_EVENTS", "droptrace (eBPF backend)"),
        needs(Area::Bpf, "CONFIG_DEBUG_INFO_BTF", EBPF_BACKENDS),
    ],
    backends: Some(capabilities),
    self_test: Some(|| Box::pin(ebpf::self_test())),
};

/// What `kconfig tracing|bpf` prints about droptrace on this kernel:
/// whether each backend can run, found by trying (the eBPF programs are
/// loaded and attached, then dropped) rather than by version, and why not.
pub fn capabilities() -> String {
    capabilities_with(&ebpf::attach(Hook::Auto, ebpf::TraceOptions::default()))
}

/// `capabilities` for a tracer attached already (`kconfig bpf`'s self-test
/// has one: no need to load the programs a second time).
pub fn capabilities_with(attached: &anyhow::Result<(DropTracer, KernelInfo)>) -> String {
    let ebpf = match attached {
        Ok((tracer, kernel)) => match tracer.hook {
            DropHook::BtfTracepoint => format!("yes: {}", kernel.describe()),
            DropHook::Tracepoint => {
                format!("yes: {} ({})", tracer.hook.describe(), kernel.describe())
            }
        },
        Err(e) => format!("no ({e:#})"),
    };
    let ftrace = match tracefs::dir() {
        Ok(dir) => match std::fs::read_to_string(dir.join("events/skb/kfree_skb/format")) {
            Ok(format) if ftrace::location_is_plain_pointer(&format) => {
                if dir.join("dynamic_events").exists() {
                    format!(
                        "yes ({}; this kernel prints locations as %p: read through an event probe)",
                        dir.display()
                    )
                } else {
                    format!(
                        "yes, without locations ({}: they print as hashed %p and there are no event probes)",
                        dir.display()
                    )
                }
            }
            Ok(_) => format!("yes ({})", dir.display()),
            Err(_) => format!("no (no skb:kfree_skb in {})", dir.display()),
        },
        Err(e) => format!("no ({e:#})"),
    };
    format!("droptrace: eBPF backend: {ebpf}\ndroptrace: ftrace backend: {ftrace}")
}
