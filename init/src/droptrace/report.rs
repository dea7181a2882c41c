//! The text of `droptrace show`, `summary` and `watch` from the store:
//! column widths, times, stacks symbolized, counts by key.

use myinit_common::droptrace::{DROP_HAS_STACK, STACK_NONE};

use super::event::{DropFilter, DropRecord};
use super::store::{DropStore, Kept};

/// The widest LOCATION a `watch` row gives room to; longer ones are cut
/// (`show` sizes its columns to what it prints).
pub const WATCH_LOCATION: usize = 36;

/// Column widths of a table: COMM PID CPU LOCATION REASON DEV NETNS.
pub struct Columns {
    pub time: usize,
    pub location: usize,
    pub reason: usize,
    pub dev: usize,
}

impl Columns {
    pub const WATCH: Columns = Columns {
        time: 12,
        location: WATCH_LOCATION,
        reason: 20,
        dev: 10,
    };

    pub fn fit(rows: &[(String, &DropRecord)]) -> Columns {
        let mut c = Columns {
            time: 4,
            location: 8,
            reason: 6,
            dev: 3,
        };
        for (time, r) in rows {
            c.time = c.time.max(time.len());
            c.location = c.location.max(r.location.len());
            c.reason = c.reason.max(r.reason.len());
            c.dev = c.dev.max(r.dev.as_deref().map_or(1, str::len));
        }
        c
    }

    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &self,
        time: &str,
        comm: &str,
        pid: &str,
        cpu: &str,
        location: &str,
        reason: &str,
        dev: &str,
        netns: &str,
        packet: &str,
    ) -> String {
        let location = cut(location, self.location);
        format!(
            "{time:<tw$} {comm:<16} {pid:<7} {cpu:<3} {location:<lw$} {reason:<rw$} {dev:<dw$} {netns:<10} {packet}",
            tw = self.time,
            lw = self.location,
            rw = self.reason,
            dw = self.dev,
        )
    }

    pub fn header(&self) -> String {
        self.line(
            "TIME", "COMM", "PID", "CPU", "LOCATION", "REASON", "DEV", "NETNS", "PACKET",
        )
    }

    pub fn row(&self, time: &str, r: &DropRecord) -> String {
        self.line(
            time,
            &r.comm,
            &r.pid.to_string(),
            &r.cpu.to_string(),
            &r.location,
            &r.reason,
            r.dev.as_deref().unwrap_or("?"),
            &r.netns.map_or("?".into(), |n| n.to_string()),
            &r.packet_text(),
        )
    }
}

/// `text` cut to `width` characters, the cut marked with `…`.
pub fn cut(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= width {
        return text.into();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…").into()
}

/// TIME: seconds since `start` (`+1.234567`), or with `abs` (the offset
/// of `job::monotonic_to_epoch_ns`) the wall-clock time of day in UTC,
/// from the monotonic time of the drop.
pub fn time_text(time_ns: u64, started_ns: u64, abs: Option<u64>) -> String {
    if let Some(to_epoch) = abs {
        let real = time_ns + to_epoch;
        let day_ns = real % 86_400_000_000_000;
        let secs = day_ns / 1_000_000_000;
        return format!(
            "{:02}:{:02}:{:02}.{:06}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            day_ns % 1_000_000_000 / 1000
        );
    }
    let rel = time_ns.saturating_sub(started_ns);
    format!("+{}.{:06}", rel / 1_000_000_000, rel % 1_000_000_000 / 1000)
}

/// A kept drop's stack frames as `show --stack` prints them, one per
/// line, indented under its row.
pub fn stack_lines(s: &mut DropStore, index: usize) -> String {
    let stack_id = match s.events.get(index) {
        Some(Kept::Raw(e, _)) if e.flags & DROP_HAS_STACK != 0 => e.stack_id,
        Some(Kept::Raw(..)) => STACK_NONE,
        _ => return "    (no stack: the ftrace backend has none)\n".into(),
    };
    frames_text(s, stack_id, "    ")
}

/// The frames of stack `stack_id`, symbolized, each on its own line.
pub fn frames_text(s: &mut DropStore, stack_id: u32, indent: &str) -> String {
    if stack_id == STACK_NONE {
        return format!("{indent}(stack lost: the stack map could not take it)\n");
    }
    let Some(frames) = s.stack_frames(stack_id) else {
        return format!("{indent}(stack {stack_id} no longer in the stack map)\n");
    };
    let mut text = String::new();
    let mut in_tracer = true;
    for ip in frames {
        let name = match s.decoder.as_mut() {
            Some(d) => d.location(ip),
            None => format!("{ip:#x}"),
        };
        // The innermost frames are the tracer's own (our program and the
        // tracepoint's glue), the same for every drop: not shown.
        in_tracer = in_tracer && is_tracing_frame(&name);
        if !in_tracer {
            text.push_str(&format!("{indent}{name}\n"));
        }
    }
    text
}

/// Frames of the tracing machinery between the drop and our program.
pub fn is_tracing_frame(name: &str) -> bool {
    [
        "bpf_prog_",
        "bpf_trace_run",
        "__bpf_trace_",
        "trace_call_bpf",
        "perf_trace_",
        "perf_tp_event",
        "__traceiter_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

pub fn sorted_counts(counts: impl IntoIterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// A summary key's device: its name when it is in our namespace (the
/// index means nothing elsewhere), else `ifN`.
pub fn key_dev(ifindex: u32, netns: u32, own: Option<u32>) -> String {
    if ifindex == 0 {
        return "?".into();
    }
    if Some(netns) == own {
        if let Ok(name) = nix::net::if_::if_indextoname(ifindex) {
            return name.to_string_lossy().into_owned();
        }
    }
    format!("if{ifindex}")
}

/// Drops per kernel stack id (`STACK_NONE`: stack lost) that pass `filter`:
/// the kernel's counts in summary mode, else the run's (or with a filter,
/// the kept drops').
pub fn counts_by_stack(s: &mut DropStore, filter: &DropFilter) -> Vec<(u32, u64)> {
    let mut by_stack = std::collections::HashMap::<u32, u64>::new();
    if s.summary_mode {
        for (key, n) in s.kernel_counts.clone() {
            if s.key_matches(filter, &key) {
                *by_stack.entry(key.stack_id).or_default() += n;
            }
        }
    } else if filter.is_empty() {
        by_stack = s.stack_counts().clone();
    } else {
        for (_, index) in s.decoded_kept(filter) {
            if let Some(Kept::Raw(e, _)) = s.events.get(index) {
                let id = if e.flags & DROP_HAS_STACK != 0 {
                    e.stack_id
                } else {
                    STACK_NONE
                };
                *by_stack.entry(id).or_default() += 1;
            }
        }
    }
    let mut v: Vec<(u32, u64)> = by_stack.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}
