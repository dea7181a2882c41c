//! droptrace: the kfree_skb drop tracer command (see src/droptrace/).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::{parse_args, seconds_option, usage, CommandSpec};
use crate::droptrace::ebpf::TracerFilter;
use crate::droptrace::event::{DropFilter, DropRecord};
use crate::droptrace::files;
use crate::droptrace::job::{self, Backend, Hook, StartOptions};
use crate::droptrace::report::{
    counts_by_stack, frames_text, key_dev, sorted_counts, stack_lines, time_text, Columns,
};
use crate::droptrace::store::{DropStore, Drops, DEFAULT_KEEP};
use crate::shell::Ctx;
use myinit_common::droptrace::{MAX_SNAPLEN, STACK_NONE};

/// Memory one kept drop takes, rounded up from the 445 bytes measured with
/// 1.79 million drops (record, strings, `Arc` and queue slot).
const DROP_BYTES: u64 = 512;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "droptrace",
    usage: "",
    summary: "trace where and why the kernel drops packets (kfree_skb)",
    help: "FILTER is --reason NAME, --dev IFACE, --proto NAME|NUM, --netns NS, each optional.\n\
           Reasons come from the kernel's BTF (enum skb_drop_reason) or the tracepoint's\n\
           format file, and --reason must be one of them; the device, its namespace and\n\
           the packet are read from the sk_buff by the eBPF backend using offsets from\n\
           BTF (the ftrace backend shows `?`). --dev matches in droptrace's own network\n\
           namespace unless --netns names another (or any).\n\
           --summary counts in the kernel (per-CPU map by reason, location, device and\n\
           protocol): exact at any rate, no drop kept; `summary` reads the counts.\n\
           --stack takes each drop's kernel stack (a stack map; frames named from\n\
           /proc/kallsyms when shown: show --stack, summary --stack); stacks the map\n\
           cannot hold are counted as lost. --snaplen N keeps the first N bytes (at\n\
           most 2048) of each dropped packet from its MAC header (or its network header\n\
           when it has none; the linear part of the sk_buff only): save FILE.pcapng\n\
           writes them with reason, location, device, namespace and task in each\n\
           packet's comment; save FILE.jsonl adds them decoded (packet.layers).",
    run: droptrace,
    cli: Some(Cli::command),
}];

/// `--hook`: which kernel hook the eBPF backend attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum HookArg {
    /// tp_btf when the kernel's BTF has it, else the classic tracepoint.
    Auto,
    /// `tp_btf/kfree_skb` only.
    TpBtf,
    /// The classic `skb:kfree_skb` tracepoint (format-file offsets).
    Tracepoint,
}

impl From<HookArg> for Hook {
    fn from(hook: HookArg) -> Hook {
        match hook {
            HookArg::Auto => Hook::Auto,
            HookArg::TpBtf => Hook::TpBtf,
            HookArg::Tracepoint => Hook::Tracepoint,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "droptrace",
    disable_help_subcommand = true,
    override_usage = "droptrace start [COUNT] [--backend auto|ebpf|ftrace] [--hook auto|tp-btf|tracepoint] [--keep N] [--summary] [--stack [--stack-entries N]] [--snaplen N] [FILTER...] [EXPRESSION]\n\
                      droptrace stop\n\
                      droptrace show [N] [--last N] [--abs] [--stack] [FILTER...]\n\
                      droptrace clear\n\
                      droptrace summary [--stack] [FILTER...]\n\
                      droptrace watch [COUNT] [--seconds S] [--backend auto|ebpf|ftrace] [FILTER...] [EXPRESSION]\n\
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
    /// only drops on devices of this network namespace: its inode (as lsns
    /// shows it), its name in `ip netns`, or any; --dev alone means ours
    #[arg(long, value_name = "NS")]
    netns: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<DropFilter> {
        // Only a reason needs the kernel's list (and reading it costs).
        let names = if self.reason.is_some() {
            crate::droptrace::reason_names()
        } else {
            Default::default()
        };
        DropFilter::new(
            self.reason.clone(),
            self.dev.clone(),
            self.proto.clone(),
            self.netns.clone(),
            &names,
        )
        .map_err(usage)
    }
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// trace in the background; stops by itself after COUNT matching drops.
    /// EXPRESSION, the trailing words, is a pcap-filter expression (see
    /// `filter`) on the dropped packet, run in the kernel before anything
    /// is queued, so `lost` counts only drops that matched (eBPF only): the
    /// packet from its MAC header when a 14-byte one is set, else from its
    /// network header (raw IP), as `save FILE.pcapng` writes it; only its
    /// linear bytes are read
    Start {
        /// COUNT (stop after this many matching drops), then the expression
        #[arg(value_name = "COUNT|EXPRESSION")]
        words: Vec<String>,
        /// auto (default) tries eBPF first and says why it falls back to ftrace
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
        /// the eBPF hook: tp-btf (BTF tracepoint) or tracepoint (classic
        /// skb:kfree_skb, offsets from its format file); auto: tp-btf if any
        #[arg(long, value_enum, default_value = "auto")]
        hook: HookArg,
        /// keep the last N drops for show (default 1000; at most what fits
        /// in 1/8 of the available memory, at 512 bytes a drop)
        #[arg(long, default_value_t = DEFAULT_KEEP, value_name = "N")]
        keep: usize,
        /// only count, in the kernel, by reason, location, device and
        /// protocol: no event per drop, exact at any rate (eBPF only)
        #[arg(long)]
        summary: bool,
        /// take each drop's kernel stack (eBPF only; with --summary the
        /// counts are also by stack)
        #[arg(long)]
        stack: bool,
        /// distinct stacks the stack map holds (default 4096, about 1 KiB
        /// of kernel memory each); more are counted as lost stacks
        #[arg(long, value_name = "N")]
        stack_entries: Option<u32>,
        /// keep the first N bytes (1 to 2048) of each dropped packet, for
        /// save FILE.pcapng (eBPF only, not with --summary)
        #[arg(long, value_name = "N")]
        snaplen: Option<u32>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// stop tracing; queued events are read first
    Stop,
    /// the kept drops: TIME COMM PID CPU LOCATION REASON DEV NETNS PACKET,
    /// and how many were captured, matched and lost
    Show {
        /// only the last N (of those the filter passes)
        count: Option<usize>,
        /// the same as N
        #[arg(long, value_name = "N", conflicts_with = "count")]
        last: Option<usize>,
        /// TIME as the wall-clock time (UTC) instead of seconds since start
        #[arg(long)]
        abs: bool,
        /// the kernel stack under each drop (a run started with --stack)
        #[arg(long)]
        stack: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// forget the kept drops and counts
    Clear,
    /// counts by reason and by location, most frequent first (with
    /// --summary: also by reason, location, device and protocol together)
    Summary {
        /// also the counts by kernel stack, with its frames (a run started
        /// with --stack)
        #[arg(long)]
        stack: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// print drops as they happen until a key, Ctrl-C, COUNT or --seconds;
    /// starts (and then stops) a tracer if none runs. Without --seconds, the
    /// end of a standard input that is no terminal (< /dev/null) ends it too
    Watch {
        /// COUNT (stop after this many drops shown), then a pcap-filter
        /// expression for the tracer this starts (as for start)
        #[arg(value_name = "COUNT|EXPRESSION")]
        words: Vec<String>,
        /// stop after this long (fractions allowed)
        #[arg(long, value_name = "S")]
        seconds: Option<String>,
        /// as for start
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// write the kept drops to FILE: pcapng when it ends in .pcapng (the
    /// packets of a run started with --snaplen), else JSONL, one drop per line
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
            words,
            backend,
            hook,
            keep,
            summary,
            stack,
            stack_entries,
            snaplen,
            filter,
        } => {
            let (count, expr) = count_and_expression(&words)?;
            if keep == 0 {
                return Err(usage("--keep must be at least 1"));
            }
            let snaplen = match snaplen {
                None => 0,
                Some(n) if (1..=MAX_SNAPLEN).contains(&n) => n,
                Some(n) => {
                    return Err(usage(format!(
                        "--snaplen {n}: 1 to {MAX_SNAPLEN} bytes of each packet"
                    )))
                }
            };
            if snaplen != 0 && summary {
                return Err(usage(
                    "--snaplen keeps packets with each drop; --summary keeps no drop",
                ));
            }
            if stack_entries.is_some() && !stack {
                return Err(usage(
                    "--stack-entries N sizes the stack map of --stack: give --stack too",
                ));
            }
            if stack_entries == Some(0) {
                return Err(usage("--stack-entries must be at least 1"));
            }
            crate::util::check_memory_cap("--keep", keep as u64, DROP_BYTES + u64::from(snaplen))?;
            if hook != HookArg::Auto && backend == Backend::Ftrace {
                return Err(usage("--hook is for the eBPF backend"));
            }
            let opts = StartOptions {
                backend,
                hook: hook.into(),
                limit: count,
                keep,
                filter: filter.filter()?,
                expr,
                summary,
                stack_entries: stack.then(|| stack_entries.unwrap_or(job::DEFAULT_STACK_ENTRIES)),
                snaplen,
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
        Sub::Show {
            count,
            last,
            abs,
            stack,
            filter,
        } => show(ctx, count.or(last), abs, stack, &filter.filter()?),
        Sub::Clear => {
            ctx.state().slot::<Drops>().lock().clear();
            Ok(0)
        }
        Sub::Summary { stack, filter } => summary(ctx, stack, &filter.filter()?),
        Sub::Watch {
            words,
            seconds,
            backend,
            filter,
        } => {
            let (count, expr) = count_and_expression(&words)?;
            watch(ctx, count, seconds, backend, filter.filter()?, expr)
        }
        Sub::Save { file, filter } => save(ctx, &file, &filter.filter()?),
    }
}

/// The leading COUNT (a number) and the pcap-filter expression the other
/// words make, compiled.
fn count_and_expression(
    words: &[String],
) -> anyhow::Result<(Option<u64>, Option<Arc<TracerFilter>>)> {
    let (count, rest) = match words.first().map(|w| w.parse::<u64>()) {
        Some(Ok(n)) => (Some(n), &words[1..]),
        _ => (None, words),
    };
    if rest.is_empty() {
        return Ok((count, None));
    }
    let text = rest.join(" ");
    let filter = TracerFilter::compile(&text).map_err(|e| usage(format!("filter: {e}")))?;
    Ok((count, Some(Arc::new(filter))))
}

/// Refuses a filter that the run's records cannot answer, rather than an
/// empty listing: summary mode counted by EtherType and by device in our
/// own namespace; ftrace's lines name no device, namespace or packet.
fn check_filter(s: &DropStore, filter: &DropFilter, what: &str) -> anyhow::Result<()> {
    let l4 = filter
        .proto
        .as_deref()
        .is_some_and(|p| !matches!(p, "ipv4" | "ipv6" | "arp"));
    let other_netns = filter.dev.is_some() && filter.netns != crate::droptrace::event::own_netns();
    if s.summary_mode && (l4 || other_netns) {
        return Err(usage(format!(
            "{what}: this run counted by EtherType and by device in our own namespace (--summary); --proto tcp|udp|… and --dev with another --netns need a run with full events"
        )));
    }
    if s.backend.starts_with("ftrace") && filter.needs_packet() {
        return Err(usage(format!(
            "{what}: this run's ftrace events name no device, namespace or L4 protocol; --dev, --netns and --proto tcp|udp|… need a run of the eBPF backend"
        )));
    }
    Ok(())
}

fn show(
    ctx: &mut Ctx<'_>,
    last: Option<usize>,
    abs: bool,
    with_stack: bool,
    filter: &DropFilter,
) -> anyhow::Result<i32> {
    let drops = ctx.state().slot::<Drops>();
    let mut s = drops.lock();
    check_filter(&s, filter, "show")?;
    if s.summary_mode {
        let footer = s.footer(0);
        drop(s);
        writeln!(
            ctx.out,
            "droptrace: summary mode: only counts were kept, no drops (droptrace summary shows them)\n{footer}"
        )?;
        return Ok(0);
    }
    if with_stack && !s.stack_on {
        return Err(usage(
            "show --stack: this run took no stacks (droptrace start --stack)",
        ));
    }
    let started_ns = s.started_ns;
    let to_epoch = abs.then(job::monotonic_to_epoch_ns);
    let mut events = s.decoded_kept(filter);
    if let Some(n) = last {
        events.drain(..events.len().saturating_sub(n));
    }
    let rows: Vec<(String, &DropRecord)> = events
        .iter()
        .map(|(r, _)| (time_text(r.time_ns, started_ns, to_epoch), r))
        .collect();
    let columns = Columns::fit(&rows);
    let mut text = columns.header();
    text.push('\n');
    for ((time, r), (_, index)) in rows.iter().zip(&events) {
        text.push_str(&columns.row(time, r));
        text.push('\n');
        if with_stack {
            text.push_str(&stack_lines(&mut s, *index));
        }
    }
    // The footer counts what is printed.
    text.push_str(&s.footer(rows.len()));
    text.push('\n');
    drop(s);
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn summary(ctx: &mut Ctx<'_>, with_stack: bool, filter: &DropFilter) -> anyhow::Result<i32> {
    let drops = ctx.state().slot::<Drops>();
    let mut s = drops.lock();
    check_filter(&s, filter, "summary")?;
    if with_stack && !s.stack_on {
        return Err(usage(
            "summary --stack: this run took no stacks (droptrace start --stack)",
        ));
    }
    let mut stacks = String::new();
    if with_stack {
        stacks.push_str(&format!("{:>8}  STACK\n", "COUNT"));
        for (id, n) in counts_by_stack(&mut s, filter) {
            if id == STACK_NONE {
                stacks.push_str(&format!(
                    "{n:>8}  stack lost (the stack map could not take it)\n"
                ));
                continue;
            }
            stacks.push_str(&format!("{n:>8}  stack {id}\n"));
            stacks.push_str(&frames_text(&mut s, id, "            "));
        }
    }
    let mut detail = String::new();
    let (by_reason, by_location, footer) = if s.summary_mode {
        let mut reasons = std::collections::HashMap::new();
        let mut locations = std::collections::HashMap::new();
        let mut rows = Vec::new();
        let own = crate::droptrace::event::own_netns();
        let counts = s.kernel_counts.clone();
        for (key, n) in counts {
            if !s.key_matches(filter, &key) {
                continue;
            }
            let Some(decoder) = s.decoder.as_mut() else {
                continue;
            };
            let (reason, location) = (decoder.reason(key.reason), decoder.location(key.location));
            *reasons.entry(reason.clone()).or_insert(0u64) += n;
            *locations.entry(location.clone()).or_insert(0u64) += n;
            rows.push((
                n,
                reason,
                location,
                key_dev(key.ifindex, key.netns, own),
                key.netns,
                crate::droptrace::event::ethertype_name(key.protocol),
            ));
        }
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let lw = rows.iter().map(|r| r.2.len()).max().unwrap_or(8).max(8);
        let rw = rows.iter().map(|r| r.1.len()).max().unwrap_or(6).max(6);
        detail.push_str(&format!(
            "{:>8}  {:<rw$} {:<lw$} {:<10} {:<10} PROTO\n",
            "COUNT", "REASON", "LOCATION", "DEV", "NETNS"
        ));
        for (n, reason, location, dev, netns, proto) in rows {
            detail.push_str(&format!(
                "{n:>8}  {reason:<rw$} {location:<lw$} {dev:<10} {netns:<10} {proto}\n"
            ));
        }
        let footer = format!(
            "summary mode: counted in the kernel, no drop kept; {}",
            s.footer(0)
        );
        (sorted_counts(reasons), sorted_counts(locations), footer)
    } else if filter.is_empty() {
        // The whole run, including drops no longer kept.
        let (reasons, locations) = s.counts();
        let footer = s.footer(s.events.len());
        (sorted_counts(reasons), sorted_counts(locations), footer)
    } else {
        let events = s.decoded(filter);
        let footer = s.footer(events.len());
        let mut reasons = std::collections::HashMap::new();
        let mut locations = std::collections::HashMap::new();
        for r in &events {
            *reasons.entry(r.reason.clone()).or_insert(0u64) += 1;
            *locations.entry(r.location.clone()).or_insert(0u64) += 1;
        }
        (sorted_counts(reasons), sorted_counts(locations), footer)
    };
    drop(s);
    let mut text = format!("{:>8}  REASON\n", "COUNT");
    for (reason, n) in &by_reason {
        text.push_str(&format!("{n:>8}  {reason}\n"));
    }
    text.push_str(&format!("{:>8}  LOCATION\n", "COUNT"));
    for (location, n) in &by_location {
        text.push_str(&format!("{n:>8}  {location}\n"));
    }
    text.push_str(&detail);
    text.push_str(&stacks);
    text.push_str(&footer);
    text.push('\n');
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn save(ctx: &mut Ctx<'_>, file: &str, filter: &DropFilter) -> anyhow::Result<i32> {
    let drops = ctx.state().slot::<Drops>();
    let mut s = drops.lock();
    check_filter(&s, filter, "save")?;
    if !file.ends_with(".pcapng") {
        let saved = files::save_jsonl(&mut s, filter, file)?;
        drop(s);
        writeln!(ctx.out, "droptrace: saved {saved} drops to {file}")?;
        return Ok(0);
    }
    if s.snaplen() == 0 {
        return Err(usage(format!(
            "save {file}: this run kept no packet bytes (droptrace start --snaplen N), so there is nothing to write as pcapng; save FILE.jsonl writes the drops"
        )));
    }
    let (written, without) = files::save_pcapng(&mut s, filter, file)?;
    drop(s);
    let note = if without > 0 {
        format!(" ({without} drops without packet bytes left out)")
    } else {
        String::new()
    };
    writeln!(
        ctx.out,
        "droptrace: saved {written} packets to {file}{note}"
    )?;
    Ok(0)
}

fn watch(
    ctx: &mut Ctx<'_>,
    count: Option<u64>,
    seconds: Option<String>,
    backend: Backend,
    filter: DropFilter,
    expr: Option<Arc<TracerFilter>>,
) -> anyhow::Result<i32> {
    let deadline = match seconds {
        Some(s) => Some(Instant::now() + seconds_option("--seconds", &s)?),
        None => None,
    };
    let state = ctx.state();
    let drops = state.slot::<Drops>();
    // Subscribe before starting, so the first drops are not missed.
    let mut rx = drops.subscribe();
    let started_here = !state.jobs.is_running(&job::job_id());
    if !started_here && expr.is_some() {
        return Err(usage(
            "a tracer runs already, with the filter it was started with: droptrace stop first",
        ));
    }
    if started_here {
        let opts = StartOptions {
            backend,
            hook: Hook::Auto,
            limit: None,
            keep: drops.lock().keep,
            filter: filter.clone(),
            expr,
            summary: false,
            stack_entries: None,
            snaplen: 0,
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
    let started_ns = drops.lock().started_ns;
    writeln!(ctx.out, "{}", Columns::WATCH.header())?;
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
                    if !drops.lock().running {
                        return Ok(());
                    }
                }
                event = rx.recv() => match event {
                    Ok(kept) => {
                        let r = drops.lock().decode(&kept);
                        if filter.matches(&r) {
                            shown += 1;
                            let time = time_text(r.time_ns, started_ns, None);
                            writeln!(out, "{}", Columns::WATCH.row(&time, &r))?;
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
    let lost = drops.lock().lost;
    writeln!(
        ctx.out,
        "droptrace: {shown} drops watched, {missed} too fast for the screen (kept for show), {lost} lost"
    )?;
    result?;
    Ok(0)
}
