//! The drop tracer: why did the kernel free this packet? Two backends
//! behind the same commands: eBPF (`tp_btf/kfree_skb`, else the classic
//! `skb:kfree_skb` tracepoint) and ftrace text. Kernel facts (reason names,
//! struct offsets, tracepoint layout) are read from the running kernel's
//! BTF and tracefs, never built in.

pub mod btf;
pub mod event;
pub mod ftrace;
pub mod job;
pub mod kallsyms;
pub mod store;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use crate::ebpf::{DropHook, DropTracer, DropTracerConfig, SkbOffsets};
use btf::Btf;
use event::ReasonNames;
use job::Hook;

/// Kernel BTF; `MYINIT_BTF` points elsewhere (tests simulate kernels without it).
pub fn btf_path() -> PathBuf {
    std::env::var_os("MYINIT_BTF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"))
}

/// tracefs, mounted when needed; `MYINIT_TRACEFS` names it directly (tests
/// simulate a kernel without the tracepoint by pointing at a missing path).
pub fn tracefs() -> anyhow::Result<PathBuf> {
    match std::env::var_os("MYINIT_TRACEFS") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.join("events").is_dir() {
                Ok(dir)
            } else {
                Err(anyhow!("no tracefs at {} (MYINIT_TRACEFS)", dir.display()))
            }
        }
        None => crate::ebpf::tracefs_dir(),
    }
}

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
    pub fn probe() -> Self {
        match Btf::from_file(&btf_path()) {
            Ok(btf) => KernelInfo {
                reasons: ReasonNames::from_btf(&btf).unwrap_or_default(),
                offsets: skb_offsets(&btf),
                tp_btf_args: btf.tracepoint_args("kfree_skb"),
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

/// Looks up the members the eBPF program reads.
pub fn skb_offsets(btf: &Btf) -> Option<SkbOffsets> {
    let skb = |m: &str| btf.member_offset("sk_buff", m);
    let dev = |m: &str| btf.member_offset("net_device", m);
    Some(SkbOffsets {
        head: skb("head")?,
        network_header: skb("network_header")?,
        transport_header: skb("transport_header")?,
        dev: skb("dev")?,
        len: skb("len")?,
        protocol: skb("protocol")?,
        ifindex: dev("ifindex")?,
        name: dev("name")?,
    })
}

/// Attaches the eBPF drop tracer: `tp_btf/kfree_skb` when the kernel's BTF
/// has it (with the reason argument), else the classic tracepoint; `hook`
/// can insist on one. The returned `KernelInfo` carries the reason names to
/// decode its events.
pub fn attach_ebpf(hook: Hook) -> anyhow::Result<(DropTracer, KernelInfo)> {
    let mut kernel = KernelInfo::probe();
    let btf_path = btf_path();
    let mut btf_failure = None;
    let tp_btf_ok = kernel.tp_btf_args.is_some_and(|n| n >= 3);
    if hook == Hook::TpBtf && !tp_btf_ok {
        bail!("--hook tp-btf: {}", kernel.describe());
    }
    if tp_btf_ok && hook != Hook::Tracepoint {
        let config = DropTracerConfig {
            hook: DropHook::BtfTracepoint,
            tracefs: None,
            btf_path: Some(&btf_path),
            offsets: kernel.offsets,
        };
        match DropTracer::attach(&config) {
            Ok(tracer) => return Ok((tracer, kernel)),
            Err(e) if hook == Hook::TpBtf => return Err(e),
            Err(e) => btf_failure = Some(format!("{e:#}")),
        }
    }
    let tracefs = tracefs().map_err(|e| match &btf_failure {
        Some(f) => anyhow!("tp_btf failed ({f}); classic tracepoint: {e:#}"),
        None => anyhow!("{}; classic tracepoint: {e:#}", kernel.describe()),
    })?;
    if kernel.reasons.is_empty() {
        kernel.reasons = format_reasons(&tracefs);
    }
    let config = DropTracerConfig {
        hook: DropHook::Tracepoint,
        tracefs: Some(&tracefs),
        btf_path: kernel.btf_error.is_none().then_some(btf_path.as_path()),
        offsets: kernel.offsets,
    };
    let tracer = DropTracer::attach(&config)?;
    Ok((tracer, kernel))
}

/// Reason names from the kfree_skb format file's `__print_symbolic` table.
pub fn format_reasons(tracefs: &Path) -> ReasonNames {
    let format =
        std::fs::read_to_string(tracefs.join("events/skb/kfree_skb/format")).unwrap_or_default();
    ReasonNames::from_format(&format)
}

/// What `kconfig tracing|bpf` prints about droptrace on this kernel:
/// whether each backend can run, found by trying (the eBPF programs are
/// loaded and attached, then dropped) rather than by version, and why not.
pub fn capabilities() -> String {
    capabilities_with(&attach_ebpf(Hook::Auto))
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
    let ftrace = match tracefs() {
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
