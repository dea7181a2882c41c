//! `inject FILE IF`: arguments and the summary lines; the replay itself
//! is in `crate::inject`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use clap::{CommandFactory, Parser};

use super::{parse_seconds, usage, CommandSpec, Interrupted};
use crate::filter::FileFilter;
use crate::inject::{self, Pace, Replay, Sink, Tally, MAX_GAP};
use crate::net::iface;
use crate::net::netlink::Netlink;
use crate::net::packet_socket::PacketSender;
use crate::packet::linktype::check_fits;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "inject",
    usage: "",
    summary: "send the packets of a pcap, pcapng or JSONL file into an interface",
    help: "Ethernet frames go to Ethernet interfaces (and lo); raw IP packets to\n\
           interfaces without a link header (TUN, WireGuard, IP tunnels).\n\
           The file is checked first: a bad file sends nothing. Ctrl-C stops.\n\
           Pace: the file's own timing by default, each packet due at its time\n\
           after the first packet left (no drift), but a pause of --max-gap (10 s,\n\
           as the original) or more is not waited; --speed, --topspeed, --pps\n\
           and --interval each replace it (one of them at most). --loop repeats\n\
           the file, keeping the pace: the next round starts one average gap\n\
           after the last packet. --count stops after N packets in all.\n\
           Prints progress every 2 s on long replays (stderr), then a summary\n\
           and the original's last line: Injection complete: N packets sent.\n\
           Example: inject /mnt/host/frames.pcap tap0 --count 1000 --interval 0.01",
    run: inject,
    cli: Some(InjectArgs::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "inject",
    disable_help_flag = true,
    override_usage = "inject FILE IF [--speed X | --topspeed | --pps N | --interval SECONDS] \
                      [--max-gap SECONDS] [--loop N] [--count N] [--filter EXPR]"
)]
struct InjectArgs {
    /// classic pcap (µs or ns timestamps, either byte order), pcapng, or
    /// JSONL (one packet per line); link types 1 (Ethernet), 101 (raw IP),
    /// 228 (IPv4) and 229 (IPv6)
    #[arg(value_name = "FILE")]
    file: Option<String>,
    /// a TAP made by `tap add`: the kernel receives the frames on IF; any
    /// other interface: they are sent on IF (AF_PACKET), so its peer
    /// receives them
    #[arg(value_name = "IF")]
    iface: Option<String>,
    /// the file's timing, X times faster (0.5: half as fast)
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    speed: Option<String>,
    /// as fast as the interface takes them, no timing
    #[arg(long)]
    topspeed: bool,
    /// N packets a second, evenly spaced (fractions allowed)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pps: Option<String>,
    /// this long between packets (fractions allowed; 0 is --topspeed)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    interval: Option<String>,
    /// a pause this long or longer between two packets of the file is not
    /// waited, as the original (default 10; 0: every pause is waited)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    max_gap: Option<String>,
    /// send the whole file N times
    #[arg(long = "loop", value_name = "N", allow_hyphen_values = true)]
    loops: Option<String>,
    /// only the packets this pcap-filter expression selects, e.g.
    /// --filter 'udp port 53' (`filter -d` shows its program)
    #[arg(long, value_name = "EXPR", allow_hyphen_values = true)]
    filter: Option<String>,
    /// send N packets in all, going round the file again as needed
    /// (with --loop: whichever ends first; default: each packet once)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    count: Option<String>,
}

struct Args {
    file: String,
    iface: String,
    count: Option<u64>,
    loops: Option<u64>,
    pace: Pace,
    /// Pauses this long or longer are not waited (None: all are).
    max_gap: Option<Duration>,
    filter: Option<FileFilter>,
}

/// A whole number of at least 1, for `option`.
fn at_least_one(option: &str, value: &str) -> anyhow::Result<u64> {
    match value.parse::<u64>() {
        Ok(0) => Err(usage(format!("{option} must be at least 1"))),
        Ok(n) => Ok(n),
        Err(_) => Err(usage(format!("{option}: not a number: {value}"))),
    }
}

/// A positive, finite number up to a billion, for `option`.
fn positive(option: &str, value: &str) -> anyhow::Result<f64> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e9 => Ok(x),
        _ => Err(usage(format!("{option}: not a positive number: {value}"))),
    }
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let parsed: InjectArgs = super::parse_args("inject", args)?;
    let paces: Vec<&str> = [
        ("--speed", parsed.speed.is_some()),
        ("--topspeed", parsed.topspeed),
        ("--pps", parsed.pps.is_some()),
        ("--interval", parsed.interval.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if let [first, second, ..] = paces[..] {
        return Err(usage(format!(
            "{first} and {second} both set the pace: give one of them"
        )));
    }
    let pace = if let Some(value) = &parsed.speed {
        Pace::Recorded {
            speed: positive("--speed", value)?,
        }
    } else if parsed.topspeed {
        Pace::Top
    } else if let Some(value) = &parsed.pps {
        Pace::Every(Duration::from_secs_f64(1.0 / positive("--pps", value)?))
    } else if let Some(value) = &parsed.interval {
        match parse_seconds(value)? {
            Duration::ZERO => Pace::Top,
            gap => Pace::Every(gap),
        }
    } else {
        Pace::Recorded { speed: 1.0 }
    };
    let count = parsed
        .count
        .map(|v| at_least_one("--count", &v))
        .transpose()?;
    let loops = parsed
        .loops
        .map(|v| at_least_one("--loop", &v))
        .transpose()?;
    let max_gap = match parsed.max_gap.as_deref().map(parse_seconds).transpose()? {
        None => Some(MAX_GAP),
        Some(Duration::ZERO) => None,
        Some(gap) => Some(gap),
    };
    let filter = parsed
        .filter
        .as_deref()
        .map(FileFilter::new)
        .transpose()
        .map_err(|e| usage(format!("--filter: {e}")))?;
    match (parsed.file, parsed.iface) {
        (Some(file), Some(iface)) => Ok(Args {
            file,
            iface,
            count,
            loops,
            pace,
            max_gap,
            filter,
        }),
        (None, _) => Err(usage("missing FILE and IF")),
        (Some(_), None) => Err(usage("missing IF")),
    }
}

fn inject(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args = parse(args)?;
    let (file, name) = (&args.file, &args.iface);
    let max_gap = match args.pace {
        Pace::Recorded { .. } => args.max_gap,
        _ => None,
    };
    let opened = crate::util::open_interruptible(
        Path::new(file),
        std::fs::OpenOptions::new().read(true),
        ctx.interrupts(),
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::Interrupted => Interrupted.into(),
        _ => anyhow!("{file}: {}", crate::util::io_error(&e)),
    })?;
    let (path, interrupts) = (PathBuf::from(file), ctx.interrupts());
    let filter = args.filter.clone();
    let check = move || inject::check_input(opened, &path, max_gap, filter, &interrupts);
    // Off the shell thread: it notices Ctrl-C by itself, except in a
    // blocked read of a FIFO, which ends when the writer writes or closes.
    let (source, checked) = ctx
        .block_on(async { tokio::task::spawn_blocking(check).await })?
        .map_err(|e| anyhow!("checking {file}: {e}"))??;

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

    let whole = checked.packets.saturating_mul(args.loops.unwrap_or(1));
    let total = match (args.count, args.loops) {
        _ if checked.packets == 0 => 0,
        (Some(count), Some(_)) => count.min(whole),
        (Some(count), None) => count,
        (None, _) => whole,
    };
    let replay = Replay {
        file,
        name,
        source: &source,
        checked: &checked,
        sink: &sink,
        pace: args.pace,
        max_gap,
        total,
        interrupts: ctx.interrupts(),
        filter: args.filter.clone(),
    };
    let mut tally = Tally::new(args.pace);
    // On the shell thread, not the runtime: the waits need µs, which
    // tokio's ms timer cannot give.
    let result = replay.run(&mut tally);
    let skipped = match (max_gap, checked.skipped_gaps) {
        (Some(gap), n) if n > 0 => format!(
            ", {n} pause{} of {} s or more not waited",
            if n == 1 { "" } else { "s" },
            gap.as_secs_f64()
        ),
        _ => String::new(),
    };
    writeln!(
        ctx.out,
        "inject: {} packets from {file} to {name}, {} failed{}{skipped}",
        tally.sent,
        tally.failed,
        tally.figures()
    )?;
    // The original's line, alone and last: scripts grep -Fx for it.
    writeln!(ctx.out, "Injection complete: {} packets sent", tally.sent)?;
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
        assert_eq!(a.pace, Pace::Every(Duration::from_millis(500)));
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
            ("f i --loop 0", "--loop must be at least 1"),
            ("f i --loop x", "--loop: not a number: x"),
            ("f i --speed 0", "--speed: not a positive number: 0"),
            ("f i --speed -2", "--speed: not a positive number: -2"),
            ("f i --pps inf", "--pps: not a positive number: inf"),
            (
                "f i --speed 2 --pps 5",
                "--speed and --pps both set the pace: give one of them",
            ),
            (
                "f i --interval 1 --topspeed",
                "--topspeed and --interval both set the pace: give one of them",
            ),
        ] {
            let e = parse(&words(line)).err().unwrap();
            assert!(e.is::<crate::cmd::UsageError>(), "{line}");
            assert_eq!(e.to_string(), message, "{line}");
        }
    }

    #[test]
    fn the_pace_is_the_files_own_unless_an_option_sets_it() {
        let pace = |line: &str| parse(&words(line)).unwrap().pace;
        assert_eq!(pace("f i"), Pace::Recorded { speed: 1.0 });
        assert_eq!(pace("f i --speed 2.5"), Pace::Recorded { speed: 2.5 });
        assert_eq!(pace("f i --topspeed"), Pace::Top);
        assert_eq!(pace("f i --interval 0"), Pace::Top);
        assert_eq!(pace("f i --pps 4"), Pace::Every(Duration::from_millis(250)));
        let a = parse(&words("f i --loop 3 --count 7")).unwrap();
        assert_eq!((a.loops, a.count), (Some(3), Some(7)));
    }
}
