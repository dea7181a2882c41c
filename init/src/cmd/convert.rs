//! `pcap2json IN OUT` and `json2pcap IN OUT`: packet files from pcap/pcapng
//! to JSONL (FORMATS.md) and back.
//!
//! Both stream: one record in memory at a time (packet/pcap.rs and
//! packet/jsonl.rs bound a record and a line), whatever the file's size.
//! OUT is written as `OUT.tmp` and renamed to OUT at the end; on any error
//! (bad input, full disk, Ctrl-C) `OUT.tmp` is removed, so OUT is either the
//! whole result or left as it was. OUT that exists and is not a regular file
//! (a FIFO, /dev/null) is written directly.
//!
//! A classic pcap holds one link type and one timestamp resolution in its
//! header, chosen from the records: json2pcap to pcap reads IN twice, first
//! to find them (µs unless a timestamp needs ns), then to write.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::{CommandFactory, Parser};

use super::{CommandSpec, Interrupted};
use crate::packet::jsonl::{self, Direction as JsonDirection};
use crate::packet::layers::{self, Dialect};
use crate::packet::linktype::LINKTYPE_ETHERNET;
use crate::packet::pcap::{Direction, FileError, PacketReader};
use crate::packet::pcap_writer::{PcapNgWriter, PcapWriter, TsResolution};
use crate::shell::Ctx;
use crate::util::io_error;

/// How much of an input that cannot be read twice is kept for json2pcap's
/// second read (a classic pcap needs two).
const UNSEEKABLE_LIMIT: usize = 16 << 20;
/// At most this many distinct interfaces (name, link type) in one pcapng:
/// they are kept in memory for the whole conversion.
const MAX_INTERFACES: usize = 4096;
/// How often a long conversion says how far it is (on stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
const OUT_BUFFER: usize = 256 * 1024;

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
    override_usage = "pcap2json IN OUT [jsonl|jsonl+]"
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
}

#[derive(Parser, Debug)]
#[command(
    name = "json2pcap",
    disable_help_flag = true,
    override_usage = "json2pcap IN OUT [--pcapng] [--ns]"
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
}

fn pcap2json(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: Pcap2JsonArgs = super::parse_args("pcap2json", args)?;
    let input = open_input(ctx, &args.input)?;
    refuse_same_file(&input, &args.input, &args.output)?;
    let mut progress = Progress::new("pcap2json", &args.input, ctx.interrupts());
    let (input_name, output_name) = (args.input.clone(), args.output.clone());
    let dialect = match args.format.as_deref() {
        Some("jsonl+") => Dialect::Full,
        _ => Dialect::Original,
    };
    let packets = run_blocking(ctx, &args.output, move || {
        let mut out = OutFile::create(&output_name)?;
        let mut writer = BufWriter::with_capacity(OUT_BUFFER, out.file()?);
        let packets = pcap_to_jsonl(
            input,
            &mut writer,
            (&input_name, &output_name),
            dialect,
            &mut progress,
        )?;
        writer.flush().map_err(|e| write_error(&output_name, &e))?;
        drop(writer);
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
    let input = open_input(ctx, &args.input)?;
    refuse_same_file(&input, &args.input, &args.output)?;
    let mut progress = Progress::new("json2pcap", &args.input, ctx.interrupts());
    let (input_name, output_name, force_ns) = (args.input.clone(), args.output.clone(), args.ns);
    let summary = run_blocking(ctx, &args.output, move || {
        let mut out = OutFile::create(&output_name)?;
        let file = out.file()?;
        let summary = if pcapng {
            jsonl_to_pcapng(input, file, &input_name, &output_name, &mut progress)?
        } else {
            let source = Source::new(input, &input_name)?;
            jsonl_to_pcap(
                &source,
                file,
                &input_name,
                &output_name,
                force_ns,
                &mut progress,
            )?
        };
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
    let tmp = OutFile::tmp_path(out);
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

/// OUT while it is being written: `OUT.tmp` until `commit` renames it,
/// removed when dropped uncommitted (an error, a panic, Ctrl-C).
struct OutFile {
    path: PathBuf,
    /// None: OUT is not a regular file and is written directly.
    tmp: Option<PathBuf>,
    file: Option<File>,
}

impl OutFile {
    /// Where `create` writes OUT first: None when OUT is written directly.
    fn tmp_path(out: &str) -> Option<PathBuf> {
        match std::fs::metadata(out) {
            Ok(m) if !m.is_file() => None,
            _ => Some(PathBuf::from(format!("{out}.tmp"))),
        }
    }

    fn create(out: &str) -> anyhow::Result<OutFile> {
        let path = PathBuf::from(out);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => bail!("{out}: is a directory"),
            Ok(m) if !m.is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| anyhow!("{out}: {}", io_error(&e)))?;
                return Ok(OutFile {
                    path,
                    tmp: None,
                    file: Some(file),
                });
            }
            _ => {}
        }
        let tmp = PathBuf::from(format!("{out}.tmp"));
        let file = File::create(&tmp)
            .map_err(|e| anyhow!("{out}: {}: {}", tmp.display(), io_error(&e)))?;
        Ok(OutFile {
            path,
            tmp: Some(tmp),
            file: Some(file),
        })
    }

    /// The file to write (once).
    fn file(&mut self) -> anyhow::Result<File> {
        self.file
            .take()
            .ok_or_else(|| anyhow!("{}: already taken", self.path.display()))
    }

    /// Makes what was written OUT.
    fn commit(mut self) -> anyhow::Result<()> {
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = std::fs::rename(&tmp, &self.path) {
                let _ = std::fs::remove_file(&tmp);
                bail!(
                    "{}: renaming {} to it: {}",
                    self.path.display(),
                    tmp.display(),
                    io_error(&e)
                );
            }
        }
        Ok(())
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn write_error(out: &str, e: &io::Error) -> anyhow::Error {
    anyhow!("{out}: write error: {}; {out} left as it was", io_error(e))
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

    /// Called after each packet (`done` so far) of `pass`.
    fn tick(&mut self, done: u64, pass: &str) -> anyhow::Result<()> {
        if !done.is_multiple_of(256) {
            return Ok(());
        }
        self.check_interrupted()?;
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            eprintln!(
                "{}: {}: {done} packets {pass} so far",
                self.command, self.input
            );
        }
        Ok(())
    }
}

/// pcap/pcapng records → JSONL lines; the number of packets.
fn pcap_to_jsonl(
    input: impl Read,
    out: &mut impl Write,
    (input_name, output_name): (&str, &str),
    dialect: Dialect,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    let mut reader = PacketReader::new(input).map_err(|e| match e {
        // The usual mix-up: the file is already JSONL.
        FileError::NotACapture(ref start) if start.starts_with("7b") => {
            anyhow!("{input_name}: {e} (JSONL? json2pcap converts that)")
        }
        e => anyhow!("{input_name}: {e}"),
    })?;
    let mut packets = 0u64;
    while let Some(r) = reader
        .next_record()
        .map_err(|e| anyhow!("{input_name}: {e}"))?
    {
        let direction = r.direction.map(|d| match d {
            Direction::Inbound => JsonDirection::Rx,
            Direction::Outbound => JsonDirection::Tx,
        });
        let record = jsonl::Record {
            timestamp_ns: r.timestamp_ns,
            // The original's pcap2json wrote rx for every packet.
            direction: match dialect {
                Dialect::Original => direction.or(Some(JsonDirection::Rx)),
                Dialect::Full => direction,
            },
            ifname: r.ifname.map(str::to_string),
            linktype: r.linktype,
            packet: layers::decode(dialect, r.linktype, r.data),
            comment: r.comment.clone(),
        };
        jsonl::write_record(out, &record, dialect).map_err(|e| write_error(output_name, &e))?;
        packets += 1;
        progress.tick(packets, "converted")?;
    }
    Ok(packets)
}

/// What json2pcap wrote, for its summary line.
struct Written {
    packets: u64,
    what: String,
}

/// Reads the JSONL lines of `input`: each record with its line number, a
/// bad line as an error naming the file and line.
fn each_record(
    input: impl BufRead,
    input_name: &str,
    mut f: impl FnMut(usize, jsonl::Record) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut reader = jsonl::Reader::new(input);
    while let Some(record) = reader.next() {
        let record = record.map_err(|e| match e {
            jsonl::ReadError::Line { line: 1, .. } if looks_like_a_capture(input_name) => {
                anyhow!("{input_name}: a pcap or pcapng file, not JSONL (pcap2json converts that)")
            }
            e => anyhow!("{input_name}: {e}"),
        })?;
        f(reader.line(), record)?;
    }
    Ok(())
}

/// Whether the regular file `name` starts with a pcap or pcapng magic.
fn looks_like_a_capture(name: &str) -> bool {
    let mut head = [0u8; 4];
    let read = std::fs::metadata(name).is_ok_and(|m| m.is_file())
        && File::open(name)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok();
    read && !matches!(PacketReader::new(&head[..]), Err(FileError::NotACapture(_)))
}

/// The bytes of a record, `"<auto>"` and `"<random>"` fields filled in.
fn encode(record: &jsonl::Record, input_name: &str, line: usize) -> anyhow::Result<Vec<u8>> {
    record
        .packet
        .encode()
        .map_err(|e| anyhow!("{input_name}: line {line}: {e}"))
}

fn pcap_direction(d: JsonDirection) -> Direction {
    match d {
        JsonDirection::Rx => Direction::Inbound,
        JsonDirection::Tx => Direction::Outbound,
    }
}

fn jsonl_to_pcapng(
    input: File,
    file: File,
    input_name: &str,
    output_name: &str,
    progress: &mut Progress,
) -> anyhow::Result<Written> {
    let out = BufWriter::with_capacity(OUT_BUFFER, file);
    let mut writer = PcapNgWriter::new(out).map_err(|e| write_error(output_name, &e))?;
    // (ifname, link type) of each interface described so far, by id.
    let mut interfaces: Vec<(Option<String>, u32)> = Vec::new();
    let mut packets = 0u64;
    each_record(BufReader::new(input), input_name, |line, record| {
        let frame = encode(&record, input_name, line)?;
        let key = (record.ifname.clone(), record.linktype);
        let id = match interfaces.iter().position(|i| *i == key) {
            Some(id) => id as u32,
            None => {
                if interfaces.len() >= MAX_INTERFACES {
                    bail!(
                        "{input_name}: line {line}: more than {MAX_INTERFACES} interfaces \
                         (ifname and linktype pairs)"
                    );
                }
                let id = writer
                    .describe_interface(record.ifname.as_deref(), record.linktype)
                    .map_err(|e| write_error(output_name, &e))?;
                interfaces.push(key);
                id
            }
        };
        writer
            .write(
                id,
                record.timestamp_ns,
                frame.len() as u32,
                &frame,
                record.direction.map(pcap_direction),
                record.comment.as_deref(),
            )
            .map_err(|e| write_error(output_name, &e))?;
        packets += 1;
        progress.tick(packets, "converted")
    })?;
    writer.finish().map_err(|e| write_error(output_name, &e))?;
    Ok(Written {
        packets,
        what: match interfaces.len() {
            1 => "pcapng, 1 interface".to_string(),
            n => format!("pcapng, {n} interfaces"),
        },
    })
}

/// What the first read of a JSONL file found for a classic pcap's header.
#[derive(Default)]
struct Scan {
    packets: u64,
    /// The first record's link type and the line of the first that differs.
    linktype: Option<u32>,
    /// A timestamp that is not a whole µs.
    needs_ns: bool,
    /// Lines with what only pcapng keeps.
    metadata: bool,
}

fn jsonl_to_pcap(
    source: &Source,
    file: File,
    input_name: &str,
    output_name: &str,
    force_ns: bool,
    progress: &mut Progress,
) -> anyhow::Result<Written> {
    let mut scan = Scan::default();
    each_record(source.open(input_name)?, input_name, |line, record| {
        match scan.linktype {
            None => scan.linktype = Some(record.linktype),
            Some(first) if first != record.linktype => bail!(
                "{input_name}: line {line}: link type {} after {first}: a classic pcap has one \
                 (write pcapng: --pcapng or OUT.pcapng)",
                record.linktype
            ),
            Some(_) => {}
        }
        if record.timestamp_ns / 1_000_000_000 > u64::from(u32::MAX) {
            bail!(
                "{input_name}: line {line}: timestamp {} ns is after 2106, beyond classic pcap \
                 (write pcapng: --pcapng or OUT.pcapng)",
                record.timestamp_ns
            );
        }
        scan.needs_ns |= !record.timestamp_ns.is_multiple_of(1000);
        scan.metadata |=
            record.ifname.is_some() || record.direction.is_some() || record.comment.is_some();
        scan.packets += 1;
        progress.tick(scan.packets, "checked")
    })?;
    let linktype = scan.linktype.unwrap_or(LINKTYPE_ETHERNET);
    let resolution = if scan.needs_ns || force_ns {
        TsResolution::NanoSecond
    } else {
        TsResolution::MicroSecond
    };
    let out = BufWriter::with_capacity(OUT_BUFFER, file);
    let mut writer =
        PcapWriter::new(out, linktype, resolution).map_err(|e| write_error(output_name, &e))?;
    let mut packets = 0u64;
    each_record(source.open(input_name)?, input_name, |line, record| {
        if packets == scan.packets || record.linktype != linktype {
            bail!("{input_name}: changed while being converted (line {line})");
        }
        let frame = encode(&record, input_name, line)?;
        writer
            .write(record.timestamp_ns, frame.len() as u32, &frame)
            .map_err(|e| write_error(output_name, &e))?;
        packets += 1;
        progress.tick(packets, "converted")
    })?;
    writer.finish().map_err(|e| write_error(output_name, &e))?;
    if packets != scan.packets {
        bail!(
            "{input_name}: changed while being converted ({packets} of {} packets left)",
            scan.packets
        );
    }
    let mut what = format!(
        "pcap, link type {linktype}, {} timestamps",
        match resolution {
            TsResolution::MicroSecond => "µs",
            TsResolution::NanoSecond => "ns",
        }
    );
    if scan.metadata {
        what.push_str("; ifname, direction and comment are kept in pcapng only");
    }
    Ok(Written { packets, what })
}

/// IN for json2pcap's two reads: a regular file is opened again; anything
/// else cannot be read twice, so the first read keeps a copy (bounded).
enum Source {
    File(File),
    Memory(Vec<u8>),
}

impl Source {
    fn new(mut input: File, input_name: &str) -> anyhow::Result<Source> {
        if input.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(Source::File(input));
        }
        let mut copy = Vec::new();
        (&mut input)
            .take(UNSEEKABLE_LIMIT as u64 + 1)
            .read_to_end(&mut copy)
            .map_err(|e| anyhow!("{input_name}: {}", io_error(&e)))?;
        if copy.len() > UNSEEKABLE_LIMIT {
            bail!(
                "{input_name}: not a regular file, and longer than the {} MiB kept of such input \
                 for a classic pcap's two reads (copy it to a file first, or write pcapng)",
                UNSEEKABLE_LIMIT >> 20
            );
        }
        Ok(Source::Memory(copy))
    }

    /// A reader from the start.
    fn open(&self, input_name: &str) -> anyhow::Result<Box<dyn BufRead + '_>> {
        Ok(match self {
            Source::File(file) => {
                use std::io::Seek;
                let mut file = file
                    .try_clone()
                    .map_err(|e| anyhow!("{input_name}: {}", io_error(&e)))?;
                file.rewind()
                    .map_err(|e| anyhow!("{input_name}: {}", io_error(&e)))?;
                Box::new(BufReader::with_capacity(OUT_BUFFER, file))
            }
            Source::Memory(bytes) => Box::new(&bytes[..]),
        })
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
