//! droptrace: the kfree_skb drop tracer command (see src/droptrace/).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::{parse_args, seconds_option, usage, CommandSpec};
use crate::droptrace::event::{DropFilter, DropRecord};
use crate::droptrace::job::{self, Backend, Hook, StartOptions};
use crate::droptrace::store::DEFAULT_KEEP;
use crate::shell::Ctx;

/// Memory one kept drop takes, rounded up from the 445 bytes measured with
/// 1.79 million drops (record, strings, `Arc` and queue slot).
const DROP_BYTES: u64 = 512;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "droptrace",
    usage: "",
    summary: "trace where and why the kernel drops packets (kfree_skb)",
    help: "FILTER is --reason NAME, --dev IFACE, --proto NAME|NUM, each optional.\n\
           Reasons come from the kernel's BTF (enum skb_drop_reason) or the tracepoint's\n\
           format file; the device and packet are read from the sk_buff by the eBPF\n\
           backend using offsets from BTF (the ftrace backend shows `?`).",
    run: droptrace,
    cli: Some(Cli::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "droptrace",
    disable_help_subcommand = true,
    override_usage = "droptrace start [COUNT] [--backend auto|ebpf|ftrace] [--hook auto|tp-btf|tracepoint] [--keep N] [FILTER...]\n\
                      droptrace stop\n\
                      droptrace show [FILTER...]\n\
                      droptrace clear\n\
                      droptrace summary [FILTER...]\n\
                      droptrace watch [COUNT] [--seconds S] [--backend auto|ebpf|ftrace] [FILTER...]\n\
                      droptrace save FILE [FILTER...]"
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Args, Debug, Default, Clone)]
struct FilterArgs {
    /// only drops with this reason (e.g. NO_SOCKET)
    #[arg(long, value_name = "NAME")]
    reason: Option<String>,
    /// only drops on this device
    #[arg(long, value_name = "IFACE")]
    dev: Option<String>,
    /// only drops of this protocol: tcp, udp, icmp, icmpv6, ipv4, ipv6, arp,
    /// sctp, gre, igmp, udplite or a protocol number
    #[arg(long, value_name = "NAME|NUM")]
    proto: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<DropFilter> {
        DropFilter::new(self.reason.clone(), self.dev.clone(), self.proto.clone()).map_err(usage)
    }
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// trace in the background; stops by itself after COUNT matching drops
    Start {
        /// stop after this many matching drops
        count: Option<u64>,
        /// auto (default) tries eBPF first and says why it falls back to ftrace
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
        /// the eBPF hook: tp-btf (BTF tracepoint) or tracepoint (classic
        /// skb:kfree_skb, offsets from its format file); auto: tp-btf if any
        #[arg(long, value_enum, default_value = "auto")]
        hook: Hook,
        /// keep the last N drops for show (default 1000; at most what fits
        /// in 1/8 of the available memory, at 512 bytes a drop)
        #[arg(long, default_value_t = DEFAULT_KEEP, value_name = "N")]
        keep: usize,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// stop tracing; queued events are read first
    Stop,
    /// the kept drops: COMM PID CPU LOCATION REASON DEV PACKET, and how many
    /// were captured, matched and lost
    Show {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// forget the kept drops and counts
    Clear,
    /// counts by reason and by location, most frequent first
    Summary {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// print drops as they happen until a key, Ctrl-C, COUNT or --seconds;
    /// starts (and then stops) a tracer if none runs. Without --seconds, the
    /// end of a standard input that is no terminal (< /dev/null) ends it too
    Watch {
        /// stop after this many drops shown
        count: Option<u64>,
        /// stop after this long (fractions allowed)
        #[arg(long, value_name = "S")]
        seconds: Option<String>,
        /// as for start
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// write the kept drops to FILE as JSONL, one drop per line
    Save {
        /// where to write
        file: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

fn droptrace(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let cli: Cli = parse_args("droptrace", args)?;
    match cli.command {
        Sub::Start {
            count,
            backend,
            hook,
            keep,
            filter,
        } => {
            if keep == 0 {
                return Err(usage("--keep must be at least 1"));
            }
            crate::util::check_memory_cap("--keep", keep as u64, DROP_BYTES)?;
            if hook != Hook::Auto && backend == Backend::Ftrace {
                return Err(usage("--hook is for the eBPF backend"));
            }
            let opts = StartOptions {
                backend,
                hook,
                limit: count,
                keep,
                filter: filter.filter()?,
            };
            for line in job::start(&ctx.state(), opts)? {
                writeln!(ctx.out, "{line}")?;
            }
            Ok(0)
        }
        Sub::Stop => {
            let report = ctx
                .state()
                .jobs
                .stop(&job::job_id())
                .ok_or_else(|| anyhow!("not running (droptrace start first)"))?;
            writeln!(ctx.out, "{report}")?;
            Ok(0)
        }
        Sub::Show { filter } => show(ctx, &filter.filter()?),
        Sub::Clear => {
            ctx.state().drops.lock().clear();
            Ok(0)
        }
        Sub::Summary { filter } => summary(ctx, &filter.filter()?),
        Sub::Watch {
            count,
            seconds,
            backend,
            filter,
        } => watch(ctx, count, seconds, backend, filter.filter()?),
        Sub::Save { file, filter } => save(ctx, &file, &filter.filter()?),
    }
}

/// The kept drops that pass a view filter.
fn selected(ctx: &Ctx<'_>, filter: &DropFilter) -> (Vec<Arc<DropRecord>>, String) {
    let drops = ctx.state().drops.clone();
    let s = drops.lock();
    let events: Vec<_> = s
        .events
        .iter()
        .filter(|r| filter.matches(r))
        .cloned()
        .collect();
    let footer = s.footer(events.len());
    (events, footer)
}

fn row(r: &DropRecord) -> String {
    format!(
        "{:<16} {:<7} {:<3} {:<36} {:<20} {:<10} {}",
        r.comm,
        r.pid,
        r.cpu,
        r.location,
        r.reason,
        r.dev.as_deref().unwrap_or("?"),
        r.packet_text()
    )
}

fn header() -> String {
    format!(
        "{:<16} {:<7} {:<3} {:<36} {:<20} {:<10} {}",
        "COMM", "PID", "CPU", "LOCATION", "REASON", "DEV", "PACKET"
    )
}

fn show(ctx: &mut Ctx<'_>, filter: &DropFilter) -> anyhow::Result<i32> {
    let (events, footer) = selected(ctx, filter);
    let mut text = header();
    text.push('\n');
    for r in &events {
        text.push_str(&row(r));
        text.push('\n');
    }
    text.push_str(&footer);
    text.push('\n');
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn sorted_counts(counts: impl IntoIterator<Item = (String, u64)>) -> Vec<(String, u64)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn summary(ctx: &mut Ctx<'_>, filter: &DropFilter) -> anyhow::Result<i32> {
    let (by_reason, by_location, footer) = if filter.is_empty() {
        // The whole run, including drops no longer kept.
        let drops = ctx.state().drops.clone();
        let s = drops.lock();
        (
            sorted_counts(s.by_reason.clone()),
            sorted_counts(s.by_location.clone()),
            s.footer(s.events.len()),
        )
    } else {
        let (events, footer) = selected(ctx, filter);
        let mut reasons = std::collections::HashMap::new();
        let mut locations = std::collections::HashMap::new();
        for r in &events {
            *reasons.entry(r.reason.clone()).or_insert(0u64) += 1;
            *locations.entry(r.location.clone()).or_insert(0u64) += 1;
        }
        (sorted_counts(reasons), sorted_counts(locations), footer)
    };
    let mut text = format!("{:>8}  REASON\n", "COUNT");
    for (reason, n) in &by_reason {
        text.push_str(&format!("{n:>8}  {reason}\n"));
    }
    text.push_str(&format!("{:>8}  LOCATION\n", "COUNT"));
    for (location, n) in &by_location {
        text.push_str(&format!("{n:>8}  {location}\n"));
    }
    text.push_str(&footer);
    text.push('\n');
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn save(ctx: &mut Ctx<'_>, file: &str, filter: &DropFilter) -> anyhow::Result<i32> {
    let (events, _) = selected(ctx, filter);
    let mut text = String::new();
    for r in &events {
        text.push_str(&serde_json::to_string(r.as_ref())?);
        text.push('\n');
    }
    std::fs::write(file, text).with_context(|| format!("{file}: cannot write"))?;
    writeln!(ctx.out, "droptrace: saved {} drops to {file}", events.len())?;
    Ok(0)
}

fn watch(
    ctx: &mut Ctx<'_>,
    count: Option<u64>,
    seconds: Option<String>,
    backend: Backend,
    filter: DropFilter,
) -> anyhow::Result<i32> {
    let deadline = match seconds {
        Some(s) => Some(Instant::now() + seconds_option("--seconds", &s)?),
        None => None,
    };
    let state = ctx.state();
    // Subscribe before starting, so the first drops are not missed.
    let mut rx = state.drops.subscribe();
    let started_here = !state.jobs.is_running(&job::job_id());
    if started_here {
        let opts = StartOptions {
            backend,
            hook: Hook::Auto,
            limit: None,
            keep: state.drops.lock().keep,
            filter: filter.clone(),
        };
        for line in job::start(&state, opts)? {
            writeln!(ctx.out, "{line}")?;
        }
    }
    // A single key ends `watch`, only when input is the console itself.
    let keys = ctx
        .input
        .is_console()
        .then(crate::tui::RawConsole::new)
        .filter(|k| k.is_active());
    if keys.is_some() {
        writeln!(ctx.out, "droptrace: watching; press any key to stop")?;
    }
    // No key can come from elsewhere: the end of that input is the key, or
    // an unattended script (< /dev/null) would watch forever. With
    // --seconds the watch has its end already and input does not matter.
    let input = match (&keys, deadline) {
        (None, None) => ctx.input.open().ok(),
        _ => None,
    };
    let mut input_ended = false;
    writeln!(ctx.out, "{}", header())?;
    ctx.out.flush()?;
    let mut interrupts = ctx.interrupts();
    let out = &mut *ctx.out;
    let mut shown = 0u64;
    let mut missed = 0u64;
    let result: anyhow::Result<()> = state.rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            if count.is_some_and(|c| shown >= c) {
                return Ok(());
            }
            tokio::select! {
                _ = interrupts.changed() => return Ok(()),
                _ = tick.tick() => {
                    if keys.as_ref().is_some_and(|k| k.key_pressed(Duration::ZERO)) || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(());
                    }
                    if input.as_ref().is_some_and(crate::util::input_at_end) {
                        input_ended = true;
                        return Ok(());
                    }
                    if !state.drops.lock().running {
                        return Ok(());
                    }
                }
                event = rx.recv() => match event {
                    Ok(r) => {
                        if filter.matches(&r) {
                            shown += 1;
                            writeln!(out, "{}", row(&r))?;
                            out.flush()?;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => missed += n,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    });
    drop(keys);
    if input_ended {
        writeln!(
            ctx.out,
            "droptrace: standard input is at its end, which counts as a key: stopping (--seconds S watches without input)"
        )?;
    }
    if started_here {
        if let Some(report) = state.jobs.stop(&job::job_id()) {
            writeln!(ctx.out, "{report}")?;
        }
    }
    let lost = state.drops.lock().lost;
    writeln!(
        ctx.out,
        "droptrace: {shown} drops watched, {missed} too fast for the screen (kept for show), {lost} lost"
    )?;
    result?;
    Ok(0)
}
