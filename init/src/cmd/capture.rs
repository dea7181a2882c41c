//! capture: packets of an interface to a pcap, pcapng or JSONL file (see
//! src/capture/).

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use super::{parse_args, usage, CommandSpec};
use crate::capture::files::Format;
use crate::capture::{self, Backend, Dir, StartOptions};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "capture",
    usage: "",
    summary: "capture an interface's packets to a pcap, pcapng or JSONL file",
    help: "The format is the keyword, else the file's extension (.pcap, .pcapng, .jsonl).\n\
           Ethernet interfaces and lo give link type EN10MB, TUN and other L3 devices RAW.\n\
           The eBPF backend (TC programs; TCX, or clsact + cls_bpf) copies at most 1514\n\
           bytes of a packet and names the sending process of local packets where the\n\
           kernel allows it (pcapng comment); the packet backend is a TPACKET_V3 ring.\n\
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
    override_usage = "capture start IF FILE [jsonl|pcap|pcapng] [COUNT] [--snaplen N] [--backend auto|ebpf|packet] [--dir rx|tx|both] [--ns]\n\
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
        /// the format (default: from FILE's extension, else jsonl), then the number of
        /// packets after which the capture stops by itself
        #[arg(value_name = "FORMAT|COUNT", num_args = 0..=2)]
        rest: Vec<String>,
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
    /// each capture: interface, backend, link type, file, packets, bytes,
    /// lost, rate, elapsed
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
        } => {
            let mut format = None;
            let mut count = None;
            for word in &rest {
                if let Some(f) = Format::parse(word) {
                    if format.replace(f).is_some() || count.is_some() {
                        return Err(usage(format!("unexpected argument '{word}'")));
                    }
                } else if let Ok(n) = word.parse::<u64>() {
                    if n == 0 || count.replace(n).is_some() {
                        return Err(usage(format!("COUNT must be a number above 0, not {word}")));
                    }
                } else {
                    return Err(usage(format!(
                        "expected jsonl, pcap, pcapng or a COUNT, not {word}"
                    )));
                }
            }
            // The original tool's default, for its scripts: JSONL.
            let format = format
                .or_else(|| Format::from_path(&file))
                .unwrap_or(Format::Jsonl);
            let opts = StartOptions {
                iface,
                file,
                format,
                count,
                snaplen,
                backend,
                dir,
                ns,
            };
            let line = capture::start(&ctx.state(), opts)?;
            writeln!(ctx.out, "{line}")?;
        }
        Sub::Stop { iface } => {
            let which = (iface != "all").then_some(iface.as_str());
            for report in capture::stop(&ctx.state(), which)? {
                writeln!(ctx.out, "{report}")?;
            }
        }
        Sub::Show => {
            let text = capture::show(&ctx.state());
            ctx.out.write_all(text.as_bytes())?;
        }
    }
    Ok(0)
}
