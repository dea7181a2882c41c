//! The ftrace backend: `skb:kfree_skb` events as `trace_pipe` text, in a
//! tracefs instance of our own so that other tracers (and other droptrace
//! runs) keep their buffers. Lost events are the ring's own count
//! (`per_cpu/cpuN/stats`: overrun + dropped events).
//!
//! Kernels before 6.2 print `location` with `%p`: hashed unless the
//! `hash-ptr` option is off, and on Debian's 6.1 turning it off empties
//! every `%s`, so the reason name vanishes. There an event probe over
//! `skb.kfree_skb` prints the raw fields as numbers instead (location in
//! hex, reason as its value), named from the format file's table.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _};

use super::event::{DropRecord, ReasonNames};

/// Per-CPU ring size of our instance: a flood fills it in well under a
/// second, so the reader's speed decides what is lost.
const BUFFER_KB: &str = "4096";

/// Group of our event probes in tracefs (`events/myinit/...`).
const EPROBE_GROUP: &str = "myinit";

/// A tracefs instance with `skb:kfree_skb` (or an event probe on it)
/// enabled; removed on drop, the probe with it.
pub struct FtraceSession {
    instance: PathBuf,
    tracefs: PathBuf,
    /// Closed before the instance is removed (an open file keeps it busy).
    pipe: Option<File>,
    pending: Vec<u8>,
    /// `group/event` whose enable file is ours (`skb/kfree_skb` or the probe).
    event_dir: String,
    /// The event name as trace_pipe lines carry it.
    pub event: String,
    /// Our event probe's `group/name`, removed on drop.
    eprobe: Option<String>,
    /// What this kernel's text cannot give, for the start line.
    pub note: Option<String>,
}

/// Whether the format file prints `location` as a bare `%p` (pre-6.2).
pub fn location_is_plain_pointer(format: &str) -> bool {
    format.contains("location=%p ") || format.contains("location=%p\"")
}

/// Appends one definition to `dynamic_events` (never truncating it: that
/// would remove everyone's probes).
fn dynamic_event(tracefs: &Path, line: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(tracefs.join("dynamic_events"))?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// The pid in a name like `myinit-droptrace-PID_N` or `kfree_skb_PID_N`.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('_').next()?.parse().ok()
}

/// Removes instances and event probes left by a myinit that died while
/// tracing (killed, or a VM reset): they would otherwise stay for good.
pub fn remove_stale(tracefs: &Path) {
    let alive = |pid: u32| Path::new("/proc").join(pid.to_string()).exists();
    if let Ok(entries) = std::fs::read_dir(tracefs.join("instances")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name, "myinit-droptrace-").is_some_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    let probes = std::fs::read_to_string(tracefs.join("dynamic_events")).unwrap_or_default();
    for line in probes.lines() {
        // e:myinit/kfree_skb_PID_N skb.kfree_skb …
        let Some(probe) = line
            .split_whitespace()
            .next()
            .and_then(|d| d.strip_prefix("e:"))
        else {
            continue;
        };
        let Some(name) = probe.strip_prefix(&format!("{EPROBE_GROUP}/")) else {
            continue;
        };
        if owner_pid(name, "kfree_skb_").is_some_and(|pid| !alive(pid)) {
            let _ = dynamic_event(tracefs, &format!("-:{probe}"));
        }
    }
}

impl FtraceSession {
    /// Creates the instance and enables the event. The tracepoint must exist
    /// (`events/skb/kfree_skb/format` under `tracefs`).
    pub fn open(tracefs: &Path) -> anyhow::Result<Self> {
        let format_path = tracefs.join("events/skb/kfree_skb/format");
        let Ok(format) = std::fs::read_to_string(&format_path) else {
            bail!(
                "{}: no skb:kfree_skb tracepoint (kernel without CONFIG_TRACEPOINTS or too old)",
                format_path.display()
            );
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let instance = tracefs
            .join("instances")
            .join(format!("myinit-droptrace-{unique}"));
        std::fs::create_dir(&instance)
            .with_context(|| format!("{}: cannot create a tracefs instance", instance.display()))?;
        // From here on, Drop removes the instance (and probe) even when a step fails.
        let mut session = FtraceSession {
            instance,
            tracefs: tracefs.to_path_buf(),
            pipe: None,
            pending: Vec::new(),
            event_dir: "skb/kfree_skb".into(),
            event: "kfree_skb".into(),
            eprobe: None,
            note: None,
        };
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(session.instance.join("trace_pipe"))
            .with_context(|| format!("{}: cannot open trace_pipe", session.instance.display()))?;
        session.pipe = Some(pipe);
        // Same clock as bpf_ktime_get_ns; big enough per-CPU rings.
        let _ = std::fs::write(session.instance.join("trace_clock"), "mono");
        let _ = std::fs::write(session.instance.join("buffer_size_kb"), BUFFER_KB);
        if location_is_plain_pointer(&format) {
            let name = format!("kfree_skb_{unique}");
            let probe = format!("{EPROBE_GROUP}/{name}");
            let defined = dynamic_event(
                tracefs,
                &format!(
                    "e:{probe} skb.kfree_skb skbaddr=$skbaddr:x64 location=$location:x64 \
                     protocol=$protocol:u16 reason=$reason:u32"
                ),
            );
            match defined {
                Ok(()) => {
                    session.eprobe = Some(probe.clone());
                    session.event_dir = probe;
                    session.event = name;
                }
                Err(e) => {
                    // Reason names matter more than locations: keep hashing on.
                    session.note = Some(format!(
                        "this kernel prints locations as hashed pointers and no event probe \
                         could be made ({e}): locations unknown"
                    ));
                }
            }
        } else {
            // Real pointers where the format still has a bare %p (skbaddr).
            let _ = std::fs::write(session.instance.join("options/hash-ptr"), "0");
        }
        let enable = session
            .instance
            .join("events")
            .join(&session.event_dir)
            .join("enable");
        std::fs::write(&enable, "1")
            .with_context(|| format!("{}: cannot enable the event", enable.display()))?;
        Ok(session)
    }

    /// Stops new events; what is buffered stays readable.
    pub fn disable(&self) {
        let enable = self
            .instance
            .join("events")
            .join(&self.event_dir)
            .join("enable");
        let _ = std::fs::write(enable, "0");
    }

    /// Reads what `trace_pipe` has now, up to about `max_bytes`, handing
    /// each complete line to `f`. Returns the bytes read (0: nothing queued).
    pub fn read_batch(
        &mut self,
        max_bytes: usize,
        mut f: impl FnMut(&str),
    ) -> std::io::Result<usize> {
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while total < max_bytes {
            let Some(pipe) = self.pipe.as_mut() else {
                break;
            };
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n;
            self.pending.extend_from_slice(&buf[..n]);
            let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let rest = self.pending.split_off(last_newline + 1);
            let complete = std::mem::replace(&mut self.pending, rest);
            for line in String::from_utf8_lossy(&complete).lines() {
                f(line);
            }
        }
        Ok(total)
    }

    /// Events the kernel's ring overwrote or dropped before we read them.
    pub fn lost(&self) -> u64 {
        let Ok(cpus) = std::fs::read_dir(self.instance.join("per_cpu")) else {
            return 0;
        };
        cpus.filter_map(|cpu| std::fs::read_to_string(cpu.ok()?.path().join("stats")).ok())
            .map(|stats| parse_lost(&stats))
            .sum()
    }
}

impl Drop for FtraceSession {
    fn drop(&mut self) {
        self.disable();
        self.pipe = None;
        let _ = std::fs::remove_dir(&self.instance);
        if let Some(probe) = self.eprobe.take() {
            let _ = dynamic_event(&self.tracefs, &format!("-:{probe}"));
        }
    }
}

/// `overrun:` + `dropped events:` of a per-CPU `stats` file.
pub fn parse_lost(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key.trim(), "overrun" | "dropped events")
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// Parses one `trace_pipe` line of the kfree_skb event, e.g.
/// `python3-17261 [000] ..s1. 711.155897: kfree_skb: skbaddr=… rx_sk=…
/// protocol=2048 location=__udp4_lib_rcv+0x4bc/0xd00 reason: NO_SOCKET`,
/// or of our event probe (`event` is its name), e.g. `init-1 [000] .Ns1.
/// 4.7: kfree_skb_1_0: (skb.kfree_skb) skbaddr=0xffff… location=0xffffffff…
/// protocol=2048 reason=2`.
pub fn parse_line(
    line: &str,
    event: &str,
    reasons: &ReasonNames,
    symbolize: &mut dyn FnMut(u64) -> String,
) -> Option<DropRecord> {
    let (head, body) = line.split_once(&format!(" {event}: "))?;
    // From the right: timestamp, optional flags, [cpu]; the rest is comm-pid
    // (a comm may contain spaces and dashes, so never split it from the left).
    let words: Vec<&str> = head.split_whitespace().collect();
    let ts_word = words.last()?.trim_end_matches(':');
    let cpu_index = words
        .iter()
        .rposition(|w| w.starts_with('[') && w.ends_with(']'))?;
    let cpu = words[cpu_index].trim_matches(['[', ']']).parse().ok()?;
    let cpu_pos = head.find(words[cpu_index])?;
    let task = head[..cpu_pos].trim();
    let (comm, pid) = task.rsplit_once('-')?;
    let (secs, frac) = ts_word.split_once('.').unwrap_or((ts_word, "0"));
    let frac_ns = format!("{frac:0<9}");
    let time_ns =
        secs.parse::<u64>().ok()? * 1_000_000_000 + frac_ns.get(..9)?.parse::<u64>().ok()?;

    let (fields, reason_text) = match body.split_once(" reason: ") {
        Some((f, r)) => (f, Some(r.trim())),
        None => (body, None),
    };
    let mut skb = String::new();
    let mut protocol = 0;
    let mut location = String::new();
    let mut reason_value = None;
    for pair in fields.split_whitespace() {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        match key {
            "skbaddr" => skb = value.to_string(),
            "protocol" => protocol = value.parse().unwrap_or(0),
            // 6.2+: `%pS` gives func+off/size already; 6.1: `%p`, or the
            // probe's hex value.
            "location" => {
                location = match u64::from_str_radix(value.trim_start_matches("0x"), 16) {
                    Ok(addr) if !value.contains('+') => symbolize(addr),
                    _ => value.to_string(),
                }
            }
            "reason" => reason_value = value.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (reason, reason_code) = match (reason_value, reason_text) {
        (Some(v), _) => (reasons.name(v), Some(v)),
        // An empty name is a kernel that failed to print it, not a reason.
        (None, Some(name)) if !name.is_empty() => (name.to_string(), reasons.value(name)),
        _ => ("?".to_string(), None),
    };
    Some(DropRecord {
        time_ns,
        cpu,
        pid: pid.parse().ok()?,
        comm: comm.to_string(),
        location,
        reason_code,
        reason,
        protocol,
        dev: None,
        ifindex: None,
        netns: None,
        len: None,
        packet: None,
        skb: format!("0x{}", skb.trim_start_matches("0x")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kallsyms::Kallsyms;

    #[test]
    fn parses_trace_pipe_lines_of_both_kernels() {
        let reasons = ReasonNames::from_format(
            r#"__print_symbolic(REC->reason, { 3, "NO_SOCKET" }, { 16, "OTHERHOST" })"#,
        );
        let kallsyms =
            Kallsyms::parse("ffffffff81000100 T ip_rcv_core\nffffffff81000440 T ip_rcv_finish\n");
        let line618 = "   my worker-x-17261   [001] ..s1.   711.155897: kfree_skb: skbaddr=00000000a27870e6 rx_sk=0000000000000000 protocol=2048 location=__udp4_lib_rcv+0x4bc/0xd00 reason: NO_SOCKET";
        let r = parse_line(line618, "kfree_skb", &reasons, &mut |a| {
            kallsyms.symbolize(a)
        })
        .unwrap();
        assert_eq!(r.comm, "my worker-x");
        assert_eq!(r.pid, 17261);
        assert_eq!(r.cpu, 1);
        assert_eq!(r.time_ns, 711_155_897_000);
        assert_eq!(r.protocol, 2048);
        assert_eq!(r.location, "__udp4_lib_rcv+0x4bc/0xd00");
        assert_eq!(r.reason, "NO_SOCKET");
        assert_eq!(r.reason_code, Some(3));
        assert_eq!(r.function(), "__udp4_lib_rcv");
        let line61 = "<idle>-0 [000] ..s. 12.5: kfree_skb: skbaddr=ffff888004a2c000 protocol=2048 location=ffffffff810002d0 reason: OTHERHOST";
        let r = parse_line(line61, "kfree_skb", &reasons, &mut |a| {
            kallsyms.symbolize(a)
        })
        .unwrap();
        assert_eq!(r.comm, "<idle>");
        assert_eq!(r.location, "ip_rcv_core+0x1d0/0x340");
        assert_eq!(r.reason_code, Some(16));
        assert_eq!(r.time_ns, 12_500_000_000);
        assert!(
            parse_line("garbage", "kfree_skb", &reasons, &mut |a| kallsyms
                .symbolize(a))
            .is_none()
        );
        // Our event probe on 6.1: numbers, named here.
        let probe = "init-1 [000] .Ns1. 4.755473: kfree_skb_7_0: (skb.kfree_skb) skbaddr=0xffff8dd65f319e00 location=0xffffffff81000110 protocol=2048 reason=3";
        let r = parse_line(probe, "kfree_skb_7_0", &reasons, &mut |a| {
            kallsyms.symbolize(a)
        })
        .unwrap();
        assert_eq!(r.location, "ip_rcv_core+0x10/0x340");
        assert_eq!((r.reason.as_str(), r.reason_code), ("NO_SOCKET", Some(3)));
        assert_eq!(r.skb, "0xffff8dd65f319e00");
        assert_eq!(r.pid, 1);
        assert!(parse_line(probe, "kfree_skb", &reasons, &mut |a| kallsyms.symbolize(a)).is_none());
        // 6.1 with hash-ptr off prints an empty reason: unknown, not "".
        let empty = "init-1 [000] .Ns1. 4.69: kfree_skb: skbaddr=ffff8dd65f319e00 protocol=2048 location=ffffffff81000110 reason: ";
        let r = parse_line(empty, "kfree_skb", &reasons, &mut |a| kallsyms.symbolize(a)).unwrap();
        assert_eq!((r.reason.as_str(), r.reason_code), ("?", None));
    }

    #[test]
    fn lost_counts_overruns_and_dropped_events() {
        let stats = "entries: 10\noverrun: 7\ncommit overrun: 0\nbytes: 1\ndropped events: 2\nread events: 5\n";
        assert_eq!(parse_lost(stats), 9);
    }
}
