//! capture: packets of an interface to a pcap, pcapng or JSONL file (see
//! src/capture/).

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use super::{parse_args, usage, CommandSpec};
use crate::capture::files::Format;
use crate::capture::ignore::Ignore;
use crate::capture::{self, Backend, Dir, StartOptions};
use crate::packet::layers::Dialect;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "capture",
    usage: "",
    summary: "capture an interface's packets to a pcap, pcapng or JSONL file",
    help: "The format is the keyword, else the file's extension (.pcap, .pcapng, .jsonl),\n\
           else jsonl: the original's JSONL (timestamp_us, direction, layers, as the original\n\
           decodes them); jsonl+ is ours: also timestamp_ns, ifname, linktype, the sending\n\
           process, and the layers as deep as myinit decodes (IPv6 extension headers, TCP\n\
           options). Neighbor Discovery (ICMPv6 133-137, code 0, hop limit 255) is left out\n\
           by default, in the kernel, before it is counted; include=nd keeps it, ignore=arp\n\
           leaves out ARP too (lists: include=nd,arp).\n\
           Ethernet interfaces and lo give link type EN10MB, TUN and other L3 devices RAW.\n\
           The eBPF backend (TC programs; TCX, or clsact + cls_bpf) copies whole packets\n\
           (at most 65600 bytes; --snaplen N cuts them shorter) and names the sending\n\
           process of local packets where the kernel allows it (pcapng comment); the\n\
           packet backend is a TPACKET_V3 ring.\n\
           FILTER, the trailing words, is a pcap-filter expression (see `filter`): only\n\
           what it selects is captured, tested in the kernel after the classes left out,\n\
           before anything is copied: the packet backend's socket filter, or at TC the\n\
           same program translated to eBPF.\n\
           Packets the kernel could not queue are counted as lost, never silently.\n\
           Memory is bounded: the kernel side of one capture is a 32 MiB eBPF ring (a\n\
           record takes the packet's size class: 112 bytes for a 64-byte frame) or an\n\
           8 MiB TPACKET_V3 ring; the file is written through a 256 KiB buffer.",
    run: capture,
    cli: Some(Cli::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "capture",
    disable_help_subcommand = true,
    override_usage = "capture start IF FILE [jsonl|jsonl+|pcap|pcapng] [COUNT] [include=nd] [ignore=arp] [--snaplen N] [--backend auto|ebpf|packet] [--dir rx|tx|both] [--ns] [FILTER...]\n\
                      capture stop IF|all\n\
                      capture show"
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// capture in the background until stopped or COUNT packets; it returns
    /// once packets are being captured. A second capture on one interface
    /// is named IF#2
    Start {
        /// the interface
        #[arg(value_name = "IF")]
        iface: String,
        /// the file to write (created or truncated)
        #[arg(value_name = "FILE")]
        file: String,
        /// in any order: the format (default: from FILE's extension, else jsonl), the
        /// number of packets after which the capture stops by itself, include=LIST and
        /// ignore=LIST (classes nd and arp, applied left to right; default: ignore nd)
        #[arg(value_name = "FORMAT|COUNT|include=|ignore=", num_args = 0..)]
        rest: Vec<String>,
        /// classes to keep (nd, arp; comma-separated), after the words above
        #[arg(long, value_name = "LIST")]
        include: Vec<String>,
        /// classes to leave out (nd, arp; comma-separated), after the words above
        #[arg(long, value_name = "LIST")]
        ignore: Vec<String>,
        /// bytes kept of each packet (default: the whole packet)
        #[arg(long, value_name = "N")]
        snaplen: Option<u32>,
        /// auto (default) tries eBPF first and says why it falls back to packet
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
        /// which packets: received (rx), sent (tx) or both (default)
        #[arg(long, value_enum, default_value = "both")]
        dir: Dir,
        /// nanosecond timestamps in a pcap file (default µs)
        #[arg(long)]
        ns: bool,
    },
    /// stop the captures on IF (or all of them); what the kernel queued is
    /// written first
    Stop {
        /// the interface, or all
        #[arg(value_name = "IF|all")]
        iface: String,
    },
    /// each capture: interface, backend, link type, file, the classes left
    /// out, packets, bytes, lost, rate, elapsed
    Show,
}

fn capture(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let cli: Cli = parse_args("capture", args)?;
    match cli.command {
        Sub::Start {
            iface,
            file,
            rest,
            snaplen,
            backend,
            dir,
            ns,
            include,
            ignore: ignore_options,
        } => {
            if snaplen == Some(0) {
                return Err(usage("--snaplen must be at least 1"));
            }
            let mut format = None;
            let mut count = None;
            let mut ignore = Ignore::default();
            let mut filter_words = Vec::new();
            for word in &rest {
                // The filter is the trailing words, as tcpdump takes it.
                if !filter_words.is_empty() {
                    filter_words.push(word.as_str());
                    continue;
                }
                match ignore.apply(word) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Err(usage(e)),
                }
                if let Some(f) = Format::parse(word) {
                    if format.replace(f).is_some() || count.is_some() {
                        return Err(usage(format!("unexpected argument '{word}'")));
                    }
                } else if let Ok(n) = word.parse::<u64>() {
                    if n == 0 || count.replace(n).is_some() {
                        return Err(usage(format!("COUNT must be a number above 0, not {word}")));
                    }
                } else {
                    filter_words.push(word.as_str());
                }
            }
            let options = include
                .iter()
                .map(|l| format!("include={l}"))
                .chain(ignore_options.iter().map(|l| format!("ignore={l}")));
            for word in options {
                ignore.apply(&word).map_err(usage)?;
            }
            // The original tool's default, for its scripts: JSONL.
            let format = format
                .or_else(|| Format::from_path(&file))
                .unwrap_or(Format::Jsonl(Dialect::Original));
            let opts = StartOptions {
                iface,
                file,
                format,
                count,
                snaplen,
                backend,
                dir,
                ns,
                ignore,
                filter: capture_filter(&filter_words)?,
            };
            let line = capture::start(&ctx.state(), opts)?;
            writeln!(ctx.out, "{line}")?;
        }
        Sub::Stop { iface } => {
            let which = (iface != "all").then_some(iface.as_str());
            let lines = capture::stop(&ctx.state(), which)?;
            // The original's words for stop all.
            if which.is_none() {
                let stopped = lines
                    .iter()
                    .filter(|l| l.starts_with("Stopped capture on "))
                    .count();
                if stopped == 0 {
                    writeln!(ctx.out, "No captures running")?;
                } else {
                    writeln!(ctx.out, "Stopping {stopped} capture(s)...")?;
                }
            }
            for line in lines {
                writeln!(ctx.out, "{line}")?;
            }
        }
        Sub::Show => {
            let text = capture::show(&ctx.state());
            ctx.out.write_all(text.as_bytes())?;
        }
    }
    Ok(0)
}

/// The trailing words as a filter expression. One word that is neither a
/// filter nor a known argument keeps the message it always had.
fn capture_filter(words: &[&str]) -> anyhow::Result<Option<String>> {
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let text = words.join(" ");
    if words.len() == 1 {
        if let Err(crate::filter::FilterError::Parse(e)) =
            crate::filter::Filter::compile(&text, crate::filter::Link::Ethernet)
        {
            if e.column == 1 {
                return Err(usage(format!(
                    "expected jsonl, jsonl+, pcap, pcapng, a COUNT, include=… or ignore=…, not {first}"
                )));
            }
        }
    }
    Ok(Some(text))
}
