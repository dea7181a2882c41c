//! Loading the embedded eBPF object: kernel facts it needs (tracepoint field
//! offsets from tracefs) are read here at run time and handed to the
//! programs as globals; aya-log lines reach the console only after `log on`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use aya::maps::{PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use myinit_common::DropEvent;

/// The object built from `ebpf-programs` by init/build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/myinit"));

/// Whether eBPF log lines are printed (`log on|off`). Off by default.
pub static EBPF_LOG: AtomicBool = AtomicBool::new(false);

/// Prints aya-log records from the programs while `EBPF_LOG` is on.
struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        EBPF_LOG.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("ebpf: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Where tracefs is, mounting it when needed (the VM boots without it).
pub fn tracefs_dir() -> anyhow::Result<PathBuf> {
    tracefs_dir_in(Path::new("/sys/kernel"))
}

/// `tracefs_dir` below another root (tests point it at missing paths).
pub fn tracefs_dir_in(sys_kernel: &Path) -> anyhow::Result<PathBuf> {
    let tracing = sys_kernel.join("tracing");
    if tracing.join("events").is_dir() {
        return Ok(tracing);
    }
    let mounted = nix::mount::mount(
        Some("tracefs"),
        &tracing,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    if mounted.is_ok() && tracing.join("events").is_dir() {
        return Ok(tracing);
    }
    // Older kernels: tracefs inside debugfs.
    let debug = sys_kernel.join("debug");
    let _ = nix::mount::mount(
        Some("debugfs"),
        &debug,
        Some("debugfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    let legacy = debug.join("tracing");
    if legacy.join("events").is_dir() {
        return Ok(legacy);
    }
    bail!(
        "no tracefs at {} (kernel without CONFIG_FTRACE?)",
        tracing.display()
    )
}

/// One field of a tracepoint record, from its `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceField {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// Parses a tracepoint `format` file's field lines, e.g.
/// `field:void * location; offset:16; size:8; signed:0;` (tab-separated).
pub fn parse_format(text: &str) -> Vec<TraceField> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = "";
        let mut offset = None;
        let mut size = None;
        for (i, part) in rest.split(';').enumerate() {
            let part = part.trim();
            if i == 0 {
                decl = part;
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        // The name is the declaration's last word, without any array suffix.
        let name = decl
            .rsplit([' ', '*'])
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("")
            .to_string();
        if let (Some(offset), Some(size)) = (offset, size) {
            fields.push(TraceField { name, offset, size });
        }
    }
    fields
}

/// Reads a tracepoint's fields from tracefs.
pub fn tracepoint_fields(
    tracefs: &Path,
    category: &str,
    name: &str,
) -> anyhow::Result<Vec<TraceField>> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no {category}:{name} tracepoint", path.display()))?;
    Ok(parse_format(&text))
}

/// Which kernel hook the eBPF drop tracer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropHook {
    /// `tp_btf/kfree_skb`: arguments by position, needs kernel BTF (5.5+).
    BtfTracepoint,
    /// Classic `skb:kfree_skb`: field offsets from the tracefs format file.
    Tracepoint,
}

impl DropHook {
    pub fn describe(self) -> &'static str {
        match self {
            DropHook::BtfTracepoint => "tp_btf/kfree_skb",
            DropHook::Tracepoint => "tracepoint skb:kfree_skb",
        }
    }
}

/// Member offsets (bytes) of `struct sk_buff` and `struct net_device` in
/// the running kernel, from its BTF; handed to the program as globals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOffsets {
    pub head: u32,
    pub network_header: u32,
    pub transport_header: u32,
    pub dev: u32,
    pub len: u32,
    pub protocol: u32,
    pub ifindex: u32,
    pub name: u32,
}

/// What `DropTracer::attach` needs to know about the kernel.
pub struct DropTracerConfig<'a> {
    pub hook: DropHook,
    /// tracefs, for the classic tracepoint's format file.
    pub tracefs: Option<&'a Path>,
    /// The kernel BTF file (default /sys/kernel/btf/vmlinux), for tp_btf.
    pub btf_path: Option<&'a Path>,
    /// Without them events carry no device or packet summary.
    pub offsets: Option<SkbOffsets>,
}

/// The loaded drop tracer.
pub struct DropTracer {
    pub ebpf: Ebpf,
    pub events: RingBuf<aya::maps::MapData>,
    pub lost: PerCpuArray<aya::maps::MapData, u64>,
    pub hook: DropHook,
    /// The aya-log reader; it owns a map, so it must end with the tracer.
    logger: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for DropTracer {
    fn drop(&mut self) {
        if let Some(logger) = self.logger.take() {
            logger.abort();
        }
    }
}

impl DropTracer {
    /// Loads and attaches one of the kfree_skb programs with the running
    /// kernel's offsets. Must run inside the tokio runtime (log task).
    pub fn attach(config: &DropTracerConfig<'_>) -> anyhow::Result<Self> {
        let mut loader = EbpfLoader::new();
        let tp_offsets = match config.hook {
            DropHook::Tracepoint => {
                let tracefs = config
                    .tracefs
                    .ok_or_else(|| anyhow!("the classic tracepoint needs tracefs"))?;
                let fields = tracepoint_fields(tracefs, "skb", "kfree_skb")?;
                let offset = |name: &str| {
                    fields
                        .iter()
                        .find(|f| f.name == name)
                        .map_or(u32::MAX, |f| f.offset)
                };
                let offsets = [
                    offset("skbaddr"),
                    offset("location"),
                    offset("protocol"),
                    offset("reason"),
                ];
                if offsets[1] == u32::MAX {
                    bail!("skb:kfree_skb has no 'location' field in its format file");
                }
                offsets
            }
            DropHook::BtfTracepoint => [u32::MAX; 4],
        };
        let skb = config.offsets.map_or([u32::MAX; 8], |o| {
            [
                o.head,
                o.network_header,
                o.transport_header,
                o.dev,
                o.len,
                o.protocol,
                o.ifindex,
                o.name,
            ]
        });
        let log_level: u8 = if EBPF_LOG.load(Ordering::Relaxed) {
            0xff
        } else {
            0
        };
        let aya_btf = match config.btf_path {
            Some(path) => Some(
                aya::Btf::parse_file(path, aya::Endianness::default())
                    .with_context(|| format!("{}: cannot parse BTF", path.display()))?,
            ),
            None => aya::Btf::from_sys_fs().ok(),
        };
        loader
            .btf(aya_btf.as_ref())
            .override_global("KFREE_SKB_OFF_SKBADDR", &tp_offsets[0], true)
            .override_global("KFREE_SKB_OFF_LOCATION", &tp_offsets[1], true)
            .override_global("KFREE_SKB_OFF_PROTOCOL", &tp_offsets[2], true)
            .override_global("KFREE_SKB_OFF_REASON", &tp_offsets[3], true)
            .override_global("SKB_OFF_HEAD", &skb[0], true)
            .override_global("SKB_OFF_NETWORK_HEADER", &skb[1], true)
            .override_global("SKB_OFF_TRANSPORT_HEADER", &skb[2], true)
            .override_global("SKB_OFF_DEV", &skb[3], true)
            .override_global("SKB_OFF_LEN", &skb[4], true)
            .override_global("SKB_OFF_PROTOCOL", &skb[5], true)
            .override_global("NETDEV_OFF_IFINDEX", &skb[6], true)
            .override_global("NETDEV_OFF_NAME", &skb[7], true)
            .override_global("AYA_LOG_LEVEL", &log_level, false);
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;
        match config.hook {
            DropHook::Tracepoint => {
                let program: &mut TracePoint = ebpf
                    .program_mut("kfree_skb")
                    .ok_or_else(|| anyhow!("program kfree_skb missing from the object"))?
                    .try_into()?;
                program.load().context("loading kfree_skb")?;
                program
                    .attach("skb", "kfree_skb")
                    .context("attaching to skb:kfree_skb")?;
            }
            DropHook::BtfTracepoint => {
                let btf = aya_btf
                    .as_ref()
                    .ok_or_else(|| anyhow!("tp_btf needs the kernel's BTF"))?;
                let program: &mut BtfTracePoint = ebpf
                    .program_mut("kfree_skb_btf")
                    .ok_or_else(|| anyhow!("program kfree_skb_btf missing from the object"))?
                    .try_into()?;
                program
                    .load("kfree_skb", btf)
                    .context("loading tp_btf/kfree_skb")?;
                program.attach().context("attaching tp_btf/kfree_skb")?;
            }
        }
        // After loading: the logger takes the log map out of `ebpf`, and
        // without a runtime (e.g. `kconfig tracing`) drops it at once.
        let logger = spawn_logger(&mut ebpf);
        let events = RingBuf::try_from(
            ebpf.take_map("DROP_EVENTS")
                .ok_or_else(|| anyhow!("map DROP_EVENTS missing"))?,
        )?;
        let lost = PerCpuArray::try_from(
            ebpf.take_map("DROP_LOST")
                .ok_or_else(|| anyhow!("map DROP_LOST missing"))?,
        )?;
        Ok(DropTracer {
            ebpf,
            events,
            lost,
            hook: config.hook,
            logger,
        })
    }

    /// Detaches the program: no new events; queued ones stay readable.
    pub fn detach(&mut self) {
        let name = match self.hook {
            DropHook::Tracepoint => "kfree_skb",
            DropHook::BtfTracepoint => "kfree_skb_btf",
        };
        if let Some(program) = self.ebpf.program_mut(name) {
            let _ = match self.hook {
                DropHook::Tracepoint => <&mut TracePoint>::try_from(program).map(|p| p.unload()),
                DropHook::BtfTracepoint => {
                    <&mut BtfTracePoint>::try_from(program).map(|p| p.unload())
                }
            };
        }
    }

    /// Takes up to `max` queued events, handing each to `f`; returns how
    /// many it took (bounded so a flood cannot starve other tasks).
    pub fn drain_batch(&mut self, max: usize, mut f: impl FnMut(&DropEvent)) -> usize {
        let mut taken = 0;
        while taken < max {
            let Some(item) = self.events.next() else {
                break;
            };
            taken += 1;
            if item.len() >= std::mem::size_of::<DropEvent>() {
                // SAFETY: the program writes whole DropEvents (repr(C), Pod).
                let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) };
                f(&event);
            }
        }
        taken
    }

    /// Takes every queued event.
    pub fn drain(&mut self) -> Vec<DropEvent> {
        let mut out = Vec::new();
        self.drain_batch(usize::MAX, |e| out.push(*e));
        out
    }

    /// Events the ring buffer could not take, summed over CPUs.
    pub fn lost(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// Forwards aya-log records to `ConsoleLog` while the programs run.
fn spawn_logger(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    static LOGGER: ConsoleLog = ConsoleLog;
    let logger = aya_log::EbpfLogger::init_with_logger(ebpf, &LOGGER as &dyn log::Log).ok()?;
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(handle.spawn(async move {
        // SAFETY: the logger owns the ring buffer's fd and moves into the
        // AsyncFd, so the fd stays open for as long as it is registered.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        };
        let Ok(mut fd) = registered else {
            return;
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// Loads and attaches the drop tracer the way `droptrace start --backend
/// ebpf` would, makes a drop on purpose (UDP to a closed port on loopback)
/// and reports what the program saw. Used by `kconfig bpf` to show that
/// eBPF really works on this kernel.
pub async fn self_test() -> anyhow::Result<String> {
    let (mut tracer, kernel) = crate::droptrace::attach_ebpf(crate::droptrace::job::Hook::Auto)?;
    let ours = std::process::id();
    // A closed port on loopback: the kernel frees the skb as a drop.
    if let Ok(netlink) = crate::net::netlink::Netlink::open() {
        let _ = netlink
            // lo is ifindex 1 in every network namespace.
            .set_link(1, &[crate::net::netlink::LinkChange::Up])
            .await;
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let closed = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    for _ in 0..3 {
        let _ = socket.send_to(b"myinit self-test", ("127.0.0.1", closed));
    }
    let mut seen = 0usize;
    let mut ours_seen = Vec::new();
    let mut ours_count = 0usize;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for event in tracer.drain() {
            seen += 1;
            if event.pid == ours {
                ours_count += 1;
                ours_seen.push(kernel.reasons.name(event.reason));
            }
        }
        if !ours_seen.is_empty() {
            break;
        }
    }
    ours_seen.dedup();
    let (hook, lost) = (tracer.hook.describe(), tracer.lost());
    Ok(format!(
        "{}\neBPF: loaded and attached kfree_skb ({hook}); {seen} drop event(s) seen, {} from the self-test's \
         packets (reason {}), {lost} lost",
        crate::droptrace::capabilities_with(&Ok((tracer, kernel))),
        ours_count,
        if ours_seen.is_empty() { "-".to_string() } else { ours_seen.join(",") },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kfree_skb_format_of_both_kernels() {
        let v618 = "name: kfree_skb\nID: 1\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;\n\
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n";
        let fields = parse_format(v618);
        let off = |n: &str| fields.iter().find(|f| f.name == n).map(|f| f.offset);
        assert_eq!(off("location"), Some(16));
        assert_eq!(off("rx_sk"), Some(24));
        assert_eq!(off("protocol"), Some(32));
        assert_eq!(off("reason"), Some(36));
        let v61 = "\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;\n\
\tfield:enum skb_drop_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n\
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:0;\n";
        let fields = parse_format(v61);
        let off = |n: &str| fields.iter().find(|f| f.name == n).map(|f| f.offset);
        assert_eq!(off("protocol"), Some(24));
        assert_eq!(off("reason"), Some(28));
        assert_eq!(off("comm"), Some(40));
        assert_eq!(off("rx_sk"), None);
    }

    #[test]
    fn missing_tracefs_is_a_clear_error() {
        let err = tracefs_dir_in(Path::new("/nonexistent-myinit-test")).unwrap_err();
        assert!(err.to_string().contains("no tracefs"), "{err}");
    }
}
