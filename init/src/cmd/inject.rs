//! `inject FILE IF`: sends the packets of a pcap or pcapng file into an
//! interface. Into a TAP made by `tap add` the frames are written to the
//! TAP's fd, so the kernel *receives* them on IF (what a test bench needs);
//! on any other interface they go out through an AF_PACKET socket (sent on
//! IF, received by its peer).
//!
//! The whole file is checked before the first packet leaves, so bad input
//! sends nothing, and memory stays bounded whatever the file's size: the
//! file is read twice, streaming (packet/pcap.rs), once to check every
//! packet and once to send. A regular file is simply read again; anything
//! else (a FIFO, a device, stdin) cannot be, so the first pass keeps a copy
//! of what it reads, up to `UNSEEKABLE_LIMIT` bytes; beyond that it is an
//! error before anything is sent.
//!
//! Sends the kernel keeps refusing (a full queue, ENOBUFS from a peer whose
//! MTU is smaller than the frame) are retried for `REFUSED_FOR`, then the
//! command stops and says what was sent and why the rest was not.

use clap::{CommandFactory, Parser};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{parse_seconds, usage, CommandSpec, Interrupted};
use crate::net::iface;
use crate::net::netlink::Netlink;
use crate::net::packet_socket::PacketSender;
use crate::packet::linktype::{check_fits, check_packet, protocol_of};
use crate::packet::pcap::{PacketReader, Record};
use crate::shell::Ctx;

/// How much of an input that cannot be read twice is kept in memory.
const UNSEEKABLE_LIMIT: usize = 16 << 20;
/// How long one packet is retried while the kernel refuses it.
const REFUSED_FOR: Duration = Duration::from_secs(1);
/// The pause between two tries of a refused packet.
const RETRY_PAUSE: Duration = Duration::from_millis(1);

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "inject",
    usage: "",
    summary: "send the packets of a pcap/pcapng file into an interface",
    help: "Ethernet frames go to Ethernet interfaces (and lo); raw IP packets to\n\
           interfaces without a link header (TUN, WireGuard, IP tunnels).\n\
           The file is checked first: a bad file sends nothing. Ctrl-C stops.\n\
           Example: inject /mnt/host/frames.pcap tap0 --count 1000 --interval 0.01",
    run: inject,
    cli: Some(InjectArgs::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "inject",
    disable_help_flag = true,
    override_usage = "inject FILE IF [--count N] [--interval SECONDS]"
)]
struct InjectArgs {
    /// classic pcap (µs or ns timestamps, either byte order) or pcapng;
    /// link types 1 (Ethernet), 101 (raw IP), 228 (IPv4) and 229 (IPv6)
    #[arg(value_name = "FILE")]
    file: Option<String>,
    /// a TAP made by `tap add`: the kernel receives the frames on IF; any
    /// other interface: they are sent on IF (AF_PACKET), so its peer
    /// receives them
    #[arg(value_name = "IF")]
    iface: Option<String>,
    /// send N packets in all, going round the file again as needed
    /// (default: each packet of the file once)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    count: Option<String>,
    /// pause between packets (fractions allowed; default 0)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    interval: Option<String>,
}

struct Args {
    file: String,
    iface: String,
    count: Option<u64>,
    interval: Duration,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let parsed: InjectArgs = super::parse_args("inject", args)?;
    let count = match parsed.count {
        Some(value) => match value.parse::<u64>() {
            Ok(0) => return Err(usage("--count must be at least 1")),
            Ok(n) => Some(n),
            Err(_) => return Err(usage(format!("--count: not a number: {value}"))),
        },
        None => None,
    };
    let interval = match parsed.interval {
        Some(value) => parse_seconds(&value)?,
        None => Duration::ZERO,
    };
    match (parsed.file, parsed.iface) {
        (Some(file), Some(iface)) => Ok(Args {
            file,
            iface,
            count,
            interval,
        }),
        (None, _) => Err(usage("missing FILE and IF")),
        (Some(_), None) => Err(usage("missing IF")),
    }
}

/// Where the file's bytes come from, for each pass.
enum Source {
    /// A regular file: opened again for each pass.
    File(std::path::PathBuf),
    /// What the first pass read of anything else.
    Memory(Vec<u8>),
}

impl Source {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            // The reader buffers: no BufReader.
            Source::File(path) => Box::new(std::fs::File::open(path)?),
            Source::Memory(bytes) => Box::new(&bytes[..]),
        })
    }
}

/// A reader that keeps a copy of what it reads, up to a limit.
struct Recording<R> {
    inner: R,
    copy: Vec<u8>,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.copy.len() + n > UNSEEKABLE_LIMIT {
            return Err(std::io::Error::other(format!(
                "not a regular file, and longer than the {} MiB kept of such input \
                 (copy it to a file first)",
                UNSEEKABLE_LIMIT >> 20
            )));
        }
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// What the first pass found: the number of packets and their link types
/// in the order they first appear.
struct Checked {
    packets: u64,
    linktypes: Vec<u32>,
}

/// The first pass: every packet read and checked. Stops at the next
/// Ctrl-C (`interrupts`), as a large file takes a while.
fn check_all(
    input: impl Read,
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Checked> {
    let mut reader = PacketReader::new(input)?;
    let mut checked = Checked {
        packets: 0,
        linktypes: Vec::new(),
    };
    while let Some(record) = reader.next_record()? {
        check_record(&record)?;
        if !checked.linktypes.contains(&record.linktype) {
            checked.linktypes.push(record.linktype);
        }
        checked.packets += 1;
        if checked.packets.is_multiple_of(1024) && interrupts.has_changed().unwrap_or(false) {
            return Err(Interrupted.into());
        }
    }
    Ok(checked)
}

fn check_record(record: &Record<'_>) -> anyhow::Result<()> {
    check_packet(record.linktype, record.data)
        .map_err(|e| anyhow!("packet {} (byte {}): {e}", record.number, record.offset))
}

/// Opens FILE and checks all of it, off the shell thread (a FIFO's reads
/// block, and Ctrl-C must still end the wait).
fn open_and_check(ctx: &Ctx<'_>, file: &str) -> anyhow::Result<(Source, Checked)> {
    let path = Path::new(file);
    let opened = crate::util::open_interruptible(
        path,
        std::fs::OpenOptions::new().read(true),
        ctx.interrupts(),
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::Interrupted => Interrupted.into(),
        _ => anyhow!("{file}: {}", crate::util::io_error(&e)),
    })?;
    let regular = opened.metadata().is_ok_and(|m| m.is_file());
    let interrupts = ctx.interrupts();
    let check = move || {
        if regular {
            let checked = check_all(opened, &interrupts);
            (checked, None)
        } else {
            let mut recording = Recording {
                inner: opened,
                copy: Vec::new(),
            };
            let checked = check_all(&mut recording, &interrupts);
            (checked, Some(recording.copy))
        }
    };
    // The blocking task notices Ctrl-C by itself, except in a blocked read
    // of a FIFO: then it ends when the writer writes or closes.
    let (checked, copy) = ctx
        .block_on(async { tokio::task::spawn_blocking(check).await })?
        .map_err(|e| anyhow!("checking {file}: {e}"))?;
    let checked = checked.map_err(|e| {
        if e.is::<Interrupted>() {
            e
        } else {
            anyhow!("{file}: {e}")
        }
    })?;
    let source = match copy {
        Some(bytes) => Source::Memory(bytes),
        None => Source::File(path.to_path_buf()),
    };
    Ok((source, checked))
}

/// Where the packets go.
enum Sink {
    /// The TAP's own fd: a write is a frame received on the interface.
    Tap(OwnedFd),
    /// An AF_PACKET socket: a frame sent on the interface.
    Packet { sender: PacketSender, ifindex: u32 },
}

impl Sink {
    fn send(&self, record: &Record<'_>) -> std::io::Result<usize> {
        match self {
            Sink::Tap(fd) => nix::unistd::write(fd, record.data).map_err(std::io::Error::from),
            Sink::Packet { sender, ifindex } => {
                let protocol = protocol_of(record.linktype, record.data);
                sender.send(*ifindex, protocol, record.data)
            }
        }
    }
}

fn inject(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args = parse(args)?;
    let interval = args.interval;
    let (file, name) = (&args.file, &args.iface);
    let (source, checked) = open_and_check(ctx, file)?;

    let state = ctx.state();
    let tap = state
        .taps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .map(|fd| fd.try_clone_to_owned())
        .transpose()
        .map_err(|e| anyhow!("{name}: {}", crate::util::io_error(&e)))?;
    let index = iface::ifindex(name).map_err(|_| {
        if tap.is_some() {
            anyhow!("{name}: the TAP was removed (ip link del?); `tap del {name}` forgets it")
        } else {
            anyhow!("{name}: no such interface")
        }
    })?;
    let arphrd = ctx.block_on(async {
        let nl = Netlink::open()?;
        anyhow::Ok(nl.link(index).await?.link_type)
    })??;
    for &linktype in &checked.linktypes {
        check_fits(name, arphrd, linktype, file).map_err(|e| anyhow!(e))?;
    }
    let sink = match tap {
        Some(fd) => Sink::Tap(fd),
        None => Sink::Packet {
            sender: PacketSender::open()
                .map_err(|e| anyhow!("AF_PACKET socket: {}", crate::util::io_error(&e)))?,
            ifindex: index,
        },
    };

    let total = if checked.packets == 0 {
        0
    } else {
        args.count.unwrap_or(checked.packets)
    };
    let mut interrupts = ctx.interrupts();
    let (sent, result) = ctx.block_on_uninterrupted(async {
        let mut sent = 0u64;
        // Round the file as often as --count asks.
        while sent < total {
            let reader = source
                .open()
                .map_err(|e| anyhow!(crate::util::io_error(&e)))
                .and_then(|r| Ok(PacketReader::new(r)?));
            let mut reader = match reader {
                Ok(reader) => reader,
                Err(e) => return (sent, Err(anyhow!("{file} changed while being sent: {e}"))),
            };
            let mut this_round = 0u64;
            while sent < total {
                let record = match reader.next_record() {
                    Ok(Some(record)) => record,
                    // Emptied since the check: going round again would
                    // never end.
                    Ok(None) if this_round == 0 => {
                        return (
                            sent,
                            Err(anyhow!("{file} changed while being sent: no packets left")),
                        )
                    }
                    Ok(None) => break,
                    Err(e) => return (sent, Err(anyhow!("{file} changed while being sent: {e}"))),
                };
                if let Err(e) = check_record(&record) {
                    return (sent, Err(anyhow!("{file} changed while being sent: {e}")));
                }
                if sent > 0 && !interval.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = interrupts.changed() => return (sent, Err(Interrupted.into())),
                    }
                }
                if interrupts.has_changed().unwrap_or(false) {
                    return (sent, Err(Interrupted.into()));
                }
                let mut refused_since = None;
                loop {
                    let e = match sink.send(&record) {
                        Ok(_) => break,
                        Err(e) => e,
                    };
                    let errno = e.raw_os_error();
                    // A full queue, or a peer that drops the frame (ENOBUFS:
                    // e.g. a veth peer with a smaller MTU): try again for a
                    // while, then give up.
                    let retry = matches!(errno, Some(libc::EAGAIN | libc::ENOBUFS));
                    let started = *refused_since.get_or_insert_with(Instant::now);
                    if retry && started.elapsed() < REFUSED_FOR {
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY_PAUSE) => continue,
                            _ = interrupts.changed() => return (sent, Err(Interrupted.into())),
                        }
                    }
                    let hint = match errno {
                        Some(libc::EIO) if matches!(sink, Sink::Tap(_)) => {
                            format!(" (is {name} up?)")
                        }
                        Some(libc::ENETDOWN) => format!(" (is {name} up?)"),
                        Some(libc::EMSGSIZE) => " (larger than the MTU?)".to_string(),
                        Some(libc::ENOBUFS) => format!(
                            ", for {} s (larger than the MTU where it is received, \
                             or a queue that stays full?)",
                            REFUSED_FOR.as_secs_f64()
                        ),
                        Some(libc::EAGAIN) => {
                            format!(
                                ", for {} s (a queue that stays full?)",
                                REFUSED_FOR.as_secs_f64()
                            )
                        }
                        _ => String::new(),
                    };
                    return (
                        sent,
                        Err(anyhow!(
                            "stopped after {sent} of {total} packets: packet {} of {file} \
                             (byte {}, {} bytes): {name}: {}{hint}",
                            record.number,
                            record.offset,
                            record.data.len(),
                            crate::util::io_error(&e)
                        )),
                    );
                }
                sent += 1;
                this_round += 1;
            }
        }
        (sent, Ok(()))
    });
    writeln!(ctx.out, "inject: {sent} packets from {file} to {name}")?;
    result?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn arguments_in_any_order_with_either_option_form() {
        let a = parse(&words("--count=3 f.pcap tap0 --interval 0.5")).unwrap();
        assert_eq!((a.file.as_str(), a.iface.as_str()), ("f.pcap", "tap0"));
        assert_eq!(a.count, Some(3));
        assert_eq!(a.interval, Duration::from_millis(500));
        let a = parse(&words("-- --odd-file tap0")).unwrap();
        assert_eq!((a.file.as_str(), a.count), ("--odd-file", None));
        for (line, message) in [
            ("", "missing FILE and IF"),
            ("f", "missing IF"),
            ("f i j", "unexpected argument 'j'"),
            ("f i --count", "--count needs a value"),
            ("f i --count -1", "--count: not a number: -1"),
            ("f i --count 0", "--count must be at least 1"),
            ("f i --interval x", "not a number of seconds: x"),
            ("f i --fast", "unknown option --fast"),
        ] {
            let e = parse(&words(line)).err().unwrap();
            assert!(e.is::<crate::cmd::UsageError>(), "{line}");
            assert_eq!(e.to_string(), message, "{line}");
        }
    }
}
