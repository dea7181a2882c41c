//! `pcap2json IN OUT` and `json2pcap IN OUT`: packet files from pcap/pcapng
//! to JSONL (FORMATS.md) and back. The conversions are the packet crate's
//! (`convert.rs`, streaming); OUT is written through its `AtomicFile`, so on
//! any error (bad input, full disk, Ctrl-C) OUT is left as it was.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{CommandFactory, Parser};

use super::{CommandSpec, Interrupted};
use crate::filter::FileFilter;
use crate::packet::convert::{self, ConvertError, Names};
use crate::packet::files::AtomicFile;
use crate::packet::layers::Dialect;
use crate::shell::Ctx;
use crate::util::io_error;

/// How often a long conversion says how far it is (on stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "pcap2json",
        usage: "",
        summary: "convert a pcap/pcapng file to JSONL (one packet per line)",
        help: "Lines are in the original's capture dialect (FORMATS.md): timestamp_us,\n\
               direction (from pcapng; rx where the file does not say, as the original\n\
               wrote it) and the layers as the original decodes them. jsonl+ is ours:\n\
               also timestamp_ns, ifname, comment, linktype when not Ethernet, and the\n\
               layers as deep as myinit decodes (IPv6 extension headers, TCP options).\n\
               OUT is written as OUT.tmp and renamed at the end: on an error it is\n\
               left as it was. Example: pcap2json /mnt/host/trace.pcap /tmp/trace.jsonl",
        run: pcap2json,
        cli: Some(Pcap2JsonArgs::command),
    },
    CommandSpec {
        name: "json2pcap",
        usage: "",
        summary: "convert a JSONL packet file to pcap or pcapng",
        help: "Reads all three dialects of the original tool; \"<auto>\" fields are\n\
               computed. Classic pcap: one link type, µs timestamps unless one needs ns.\n\
               pcapng keeps ifname, direction and comment. OUT is written as OUT.tmp\n\
               and renamed at the end: on an error it is left as it was.\n\
               Example: json2pcap /tmp/edited.jsonl /mnt/host/edited.pcapng",
        run: json2pcap,
        cli: Some(Json2PcapArgs::command),
    },
];

#[derive(Parser, Debug)]
#[command(
    name = "pcap2json",
    disable_help_flag = true,
    override_usage = "pcap2json IN OUT [jsonl|jsonl+] [--filter EXPR]"
)]
struct Pcap2JsonArgs {
    /// classic pcap (µs or ns timestamps, either byte order) or pcapng;
    /// link types 1 (Ethernet), 101 (raw IP), 228 (IPv4), 229 (IPv6) are
    /// decoded, others kept as raw bytes
    #[arg(value_name = "IN")]
    input: String,
    /// the JSONL file to write
    #[arg(value_name = "OUT")]
    output: String,
    /// jsonl: the original's dialect (default); jsonl+: ours, richer
    #[arg(value_name = "FORMAT", value_parser = ["jsonl", "jsonl+"])]
    format: Option<String>,
    /// only the packets this pcap-filter expression selects (`filter -d`
    /// shows its program), e.g. --filter 'tcp port 80'
    #[arg(long, value_name = "EXPR", allow_hyphen_values = true)]
    filter: Option<String>,
}

#[derive(Parser, Debug)]
#[command(
    name = "json2pcap",
    disable_help_flag = true,
    override_usage = "json2pcap IN OUT [--pcapng] [--ns] [--filter EXPR]"
)]
struct Json2PcapArgs {
    /// JSONL packets: `layers` or `data` (hex) per line, any key order
    #[arg(value_name = "IN")]
    input: String,
    /// the file to write: pcapng if it ends in .pcapng, else classic pcap
    #[arg(value_name = "OUT")]
    output: String,
    /// write pcapng whatever OUT's name (interfaces, directions, comments)
    #[arg(long)]
    pcapng: bool,
    /// classic pcap with ns timestamps even when all are whole µs
    #[arg(long)]
    ns: bool,
    /// only the packets this pcap-filter expression selects
    #[arg(long, value_name = "EXPR", allow_hyphen_values = true)]
    filter: Option<String>,
}

fn pcap2json(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: Pcap2JsonArgs = super::parse_args("pcap2json", args)?;
    let mut select = selection(args.filter.as_deref())?;
    let input = open_input(ctx, &args.input)?;
    refuse_same_file(&input, &args.input, &args.output)?;
    let mut progress = Progress::new("pcap2json", &args.input, ctx.interrupts());
    let (input_name, output_name) = (args.input.clone(), args.output.clone());
    let dialect = match args.format.as_deref() {
        Some("jsonl+") => Dialect::Full,
        _ => Dialect::Original,
    };
    let packets = run_blocking(ctx, &args.output, move || {
        let mut out = AtomicFile::create(&output_name)?;
        let names = Names {
            input: &input_name,
            output: &output_name,
        };
        let packets = convert::pcap_to_jsonl(
            input,
            &mut out,
            names,
            dialect,
            &mut select,
            &mut |done, pass| progress.tick(done, pass),
        )
        .map_err(stopped)?;
        progress.check_interrupted()?;
        out.commit()?;
        Ok(packets)
    })?;
    // The original's line, which scripts may read.
    writeln!(
        ctx.out,
        "Converted {packets} packets from {} to {}",
        args.input, args.output
    )?;
    Ok(0)
}

fn json2pcap(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: Json2PcapArgs = super::parse_args("json2pcap", args)?;
    let pcapng = args.pcapng || args.output.ends_with(".pcapng");
    if pcapng && args.ns {
        return Err(super::usage(
            "--ns is for classic pcap (pcapng timestamps are always ns)",
        ));
    }
    let mut select = selection(args.filter.as_deref())?;
    let input = open_input(ctx, &args.input)?;
    refuse_same_file(&input, &args.input, &args.output)?;
    let mut progress = Progress::new("json2pcap", &args.input, ctx.interrupts());
    let (input_name, output_name, force_ns) = (args.input.clone(), args.output.clone(), args.ns);
    let summary = run_blocking(ctx, &args.output, move || {
        let mut out = AtomicFile::create(&output_name)?;
        let names = Names {
            input: &input_name,
            output: &output_name,
        };
        let mut tick = |done, pass: &str| progress.tick(done, pass);
        let summary = if pcapng {
            convert::jsonl_to_pcapng(input, &mut out, names, &mut select, &mut tick)
        } else {
            convert::jsonl_to_pcap(input, &mut out, names, force_ns, &mut select, &mut tick)
        }
        .map_err(stopped)?;
        progress.check_interrupted()?;
        out.commit()?;
        Ok(summary)
    })?;
    // The original's line, then what kind of file it is on its own line.
    writeln!(
        ctx.out,
        "Converted {} packets from {} to {}",
        summary.packets, args.input, args.output
    )?;
    writeln!(ctx.out, "json2pcap: {}: {}", args.output, summary.what)?;
    Ok(0)
}

/// Which packets a conversion keeps: all, or those `--filter EXPR`
/// selects (an expression that does not compile is refused before
/// anything is read).
fn selection(
    filter: Option<&str>,
) -> anyhow::Result<impl FnMut(u32, &[u8]) -> Result<bool, String> + Send + 'static> {
    let mut filter = filter
        .map(FileFilter::new)
        .transpose()
        .map_err(|e| super::usage(format!("--filter: {e}")))?;
    Ok(move |linktype: u32, data: &[u8]| match &mut filter {
        None => Ok(true),
        Some(f) => f.matches(linktype, data).map_err(|e| e.to_string()),
    })
}

/// A conversion stopped by Ctrl-C is `Interrupted` (status 130).
fn stopped(e: ConvertError) -> anyhow::Error {
    match e {
        ConvertError::Stopped => Interrupted.into(),
        e => e.into(),
    }
}

/// OUT replaces its file only once IN is read whole: were they one file,
/// the input would be gone.
fn refuse_same_file(input: &File, input_name: &str, output: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if let (Ok(a), Ok(b)) = (input.metadata(), std::fs::metadata(output)) {
        if a.is_file() && a.dev() == b.dev() && a.ino() == b.ino() {
            return Err(super::usage(format!(
                "{output} is {input_name} itself: write to another file"
            )));
        }
    }
    Ok(())
}

/// Opens IN for reading; a FIFO's open can be given up with Ctrl-C.
fn open_input(ctx: &Ctx<'_>, name: &str) -> anyhow::Result<File> {
    crate::util::open_interruptible(
        Path::new(name),
        std::fs::OpenOptions::new().read(true),
        ctx.interrupts(),
    )
    .map_err(|e| match e.kind() {
        io::ErrorKind::Interrupted => Interrupted.into(),
        _ => anyhow!("{name}: {}", io_error(&e)),
    })
}

/// Runs a conversion (writing `out`) off the shell thread, where its reads
/// may block (a FIFO). Ctrl-C: the conversion notices it at its next packet
/// and removes its file; the shell waits a moment for that, never longer,
/// and then removes the file itself (the conversion, blocked in a read,
/// never renames it: it checks for Ctrl-C first).
fn run_blocking<T: Send + 'static>(
    ctx: &Ctx<'_>,
    out: &str,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let mut interrupts = ctx.interrupts();
    let tmp = AtomicFile::tmp_path(Path::new(out));
    ctx.block_on_uninterrupted(async move {
        let mut task = tokio::task::spawn_blocking(work);
        tokio::select! {
            done = &mut task => done.map_err(|e| anyhow!("the conversion failed: {e}"))?,
            _ = interrupts.changed() => {
                let ended = tokio::time::timeout(Duration::from_secs(1), task).await;
                if let (Err(_), Some(tmp)) = (ended, tmp) {
                    let _ = std::fs::remove_file(tmp);
                }
                Err(Interrupted.into())
            }
        }
    })
}

/// Packets counted, Ctrl-C noticed, and a line on stderr now and then.
struct Progress {
    command: &'static str,
    input: String,
    interrupts: tokio::sync::watch::Receiver<u64>,
    last: Instant,
}

impl Progress {
    fn new(
        command: &'static str,
        input: &str,
        interrupts: tokio::sync::watch::Receiver<u64>,
    ) -> Self {
        Progress {
            command,
            input: input.to_string(),
            interrupts,
            last: Instant::now(),
        }
    }

    /// An error if Ctrl-C came since the conversion started.
    fn check_interrupted(&self) -> anyhow::Result<()> {
        if self.interrupts.has_changed().unwrap_or(false) {
            return Err(Interrupted.into());
        }
        Ok(())
    }

    /// Called after each packet (`done` so far) of `pass`; false after
    /// Ctrl-C.
    fn tick(&mut self, done: u64, pass: &str) -> bool {
        if !done.is_multiple_of(256) {
            return true;
        }
        if self.interrupts.has_changed().unwrap_or(false) {
            return false;
        }
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            eprintln!(
                "{}: {}: {done} packets {pass} so far",
                self.command, self.input
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn arguments_are_named_when_missing() {
        let e = super::super::parse_args::<Pcap2JsonArgs>("pcap2json", &[]).unwrap_err();
        assert_eq!(e.to_string(), "missing IN and OUT");
        let e = super::super::parse_args::<Json2PcapArgs>("json2pcap", &words("a")).unwrap_err();
        assert_eq!(e.to_string(), "missing OUT");
        let a =
            super::super::parse_args::<Json2PcapArgs>("json2pcap", &words("a b --pcapng")).unwrap();
        assert!(a.pcapng && !a.ns);
    }
}
