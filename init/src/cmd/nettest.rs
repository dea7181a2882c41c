//! Network test commands: ping and netcat.

use std::io::Write;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::{parse_args, seconds_option as parse_seconds, usage, CommandSpec, Interrupted};
use crate::nettest::{netcat, ping};
use crate::shell::{Ctx, Output};

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ping",
        usage: "",
        summary: "send ICMP echo requests (IPv4 or IPv6) and report the replies",
        help: "Output and statistics are those of iputils' ping; Ctrl-C still prints\n\
               the statistics. Status 0 if at least one reply came back, 1 otherwise.\n\
               Names come from /etc/hosts, and from DNS only when /etc/resolv.conf\n\
               names a nameserver (a VM without one fails at once, not after a timeout).",
        run: ping_cmd,
        cli: Some(PingArgs::command),
    },
    CommandSpec {
        name: "netcat",
        usage: "",
        summary: "connect to or listen on a TCP/UDP port; stdin to the peer, the peer to stdout",
        help: "Stdin (the console, or a file with `< FILE`) goes to the peer. At its\n\
               end a TCP connection is half-closed and netcat goes on reading until the\n\
               peer closes; after the peer's end, typed lines still go out until the\n\
               connection is gone (then netcat ends), or Ctrl-D / Ctrl-C.\n\
               UDP has no end of stream: use -w, or Ctrl-C.\n\
               Examples:  netcat -l 5000 > got.bin      netcat 10.0.0.2 5000 < file.bin",
        run: netcat_cmd,
        cli: Some(NetcatArgs::command),
    },
];

/// `-h`/`--help` alone (with other words, an unknown option is an error).
fn wants_help(args: &[String]) -> bool {
    !args.is_empty() && args.iter().all(|a| a == "-h" || a == "--help")
}

fn print_help(ctx: &mut Ctx<'_>, name: &str) -> anyhow::Result<i32> {
    if let Some(spec) = super::find(name) {
        ctx.out.write_all(spec.help_text().as_bytes())?;
    }
    Ok(0)
}

#[derive(Parser, Debug)]
#[command(
    name = "ping",
    disable_help_flag = true,
    override_usage = "ping [-4|-6] [-c COUNT] [-i SECONDS] [-s SIZE] [-W SECONDS] [-I IF|ADDR] DEST [COUNT]"
)]
struct PingArgs {
    /// requests to send (default 4: this shell is a test bench,
    /// so ping ends by itself; Ctrl-C stops it early); COUNT after DEST too
    #[arg(short = 'c', value_name = "N")]
    count: Option<String>,
    /// interval between requests (default 1, fractions allowed)
    #[arg(short = 'i', value_name = "SECONDS")]
    interval: Option<String>,
    /// payload bytes (default 56)
    #[arg(short = 's', value_name = "SIZE")]
    size: Option<String>,
    /// how long to wait for outstanding replies after the last
    /// request (default 1); later replies are not counted
    #[arg(short = 'W', value_name = "SECONDS")]
    timeout: Option<String>,
    /// send through interface IF (SO_BINDTODEVICE), or from ADDR
    #[arg(short = 'I', value_name = "IF|ADDR")]
    iface: Option<String>,
    /// use IPv4 for a host name
    #[arg(short = '4', conflicts_with = "v6")]
    v4: bool,
    /// use IPv6 for a host name
    #[arg(short = '6')]
    v6: bool,
    /// an IPv4/IPv6 address or a host name (fe80::1%tap0 names the
    /// interface of a link-local address), then optionally COUNT
    #[arg(value_name = "DEST [COUNT]")]
    positional: Vec<String>,
}

fn parse_count(text: &str) -> anyhow::Result<u32> {
    text.parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| usage(format!("COUNT must be a positive number: {text}")))
}

/// The options and the destination of a ping command line.
fn ping_options(args: &[String]) -> anyhow::Result<(String, ping::Options)> {
    let parsed: PingArgs = parse_args("ping", args)?;
    let (dest, count_pos) = match parsed.positional.as_slice() {
        [] => return Err(usage("missing DEST")),
        [dest] => (dest.clone(), None),
        [dest, count] => (dest.clone(), Some(count.as_str())),
        _ => return Err(usage("too many arguments")),
    };
    let count = match (parsed.count.as_deref(), count_pos) {
        (Some(_), Some(_)) => return Err(usage("COUNT given twice (-c and after DEST)")),
        (Some(c), None) | (None, Some(c)) => parse_count(c)?,
        (None, None) => 4,
    };
    let interval = match parsed.interval.as_deref() {
        Some(text) => {
            let interval = parse_seconds("-i", text)?;
            if interval < Duration::from_millis(1) {
                return Err(usage("-i: the interval must be at least 0.001 seconds"));
            }
            interval
        }
        None => Duration::from_secs(1),
    };
    let family = match (parsed.v4, parsed.v6) {
        (true, _) => Some(ping::Family::V4),
        (_, true) => Some(ping::Family::V6),
        _ => None,
    };
    let size = match parsed.size.as_deref() {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|&s| s <= ping::MAX_SIZE_V6)
            .ok_or_else(|| {
                usage(format!(
                    "-s: not a payload size (0-{}): {text}",
                    ping::MAX_SIZE_V6
                ))
            })?,
        None => 56,
    };
    let timeout = match parsed.timeout.as_deref() {
        Some(text) => parse_seconds("-W", text)?,
        None => Duration::from_secs(1),
    };
    Ok((
        dest,
        ping::Options {
            count,
            interval,
            size,
            timeout,
            iface: parsed.iface,
            family,
        },
    ))
}

fn ping_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if wants_help(args) {
        return print_help(ctx, "ping");
    }
    let (dest, options) = ping_options(args)?;
    if let Some(iface) = options.iface.as_deref() {
        if iface.parse::<std::net::IpAddr>().is_err() {
            crate::net::iface::ifindex(iface)?;
        }
    }
    let target = ping::resolve(&dest, options.family, options.iface.as_deref())?;
    if target.addr.is_ipv4() && options.size > ping::MAX_SIZE_V4 {
        return Err(usage(format!("-s: at most {} for IPv4", ping::MAX_SIZE_V4)));
    }
    let interrupts = ctx.interrupts();
    // The future writes to the command's output while ctx lends the
    // runtime, so the Output is moved out of ctx for the duration.
    // Uninterrupted: ping handles Ctrl-C itself, to print its statistics.
    let mut out = std::mem::replace(&mut *ctx.out, Output::memory());
    let result =
        ctx.block_on_uninterrupted(ping::run(&target, &dest, &options, &mut out, interrupts));
    *ctx.out = out;
    let stats = result?;
    Ok(if stats.received > 0 { 0 } else { 1 })
}

#[derive(Parser, Debug)]
#[command(
    name = "netcat",
    disable_help_flag = true,
    override_usage = "netcat [-u] [-v] [-w SECONDS] HOST PORT\n\
                      netcat -l [-u] [-v] [-w SECONDS] [HOST] PORT"
)]
struct NetcatArgs {
    /// listen (on HOST's address, or on all addresses) and
    /// take one peer; for UDP the first datagram's sender
    #[arg(short = 'l')]
    listen: bool,
    /// UDP instead of TCP
    #[arg(short = 'u')]
    udp: bool,
    /// print connection details on stderr
    #[arg(short = 'v')]
    verbose: bool,
    /// connect timeout; with -l how long to wait for the first
    /// peer; and the end after SECONDS without traffic
    #[arg(short = 'w', value_name = "SECONDS")]
    wait: Option<String>,
    /// HOST PORT, or with -l [HOST] PORT
    #[arg(value_name = "HOST PORT")]
    positional: Vec<String>,
}

fn netcat_options(args: &[String]) -> anyhow::Result<netcat::Options> {
    let parsed: NetcatArgs = parse_args("netcat", args)?;
    let (host, port) = match (parsed.listen, parsed.positional.as_slice()) {
        (_, [host, port]) => (Some(host.clone()), port),
        (true, [port]) => (None, port),
        (false, [_]) => return Err(usage("missing PORT")),
        (_, []) => {
            return Err(usage(if parsed.listen {
                "missing PORT"
            } else {
                "missing HOST and PORT"
            }))
        }
        _ => return Err(usage("too many arguments")),
    };
    let port = netcat::parse_port(port).ok_or_else(|| usage(format!("bad port: {port}")))?;
    let wait = match parsed.wait.as_deref() {
        Some(text) => {
            let wait = parse_seconds("-w", text)?;
            if wait.is_zero() {
                return Err(usage("-w: must be more than 0 seconds"));
            }
            Some(wait)
        }
        None => None,
    };
    Ok(netcat::Options {
        listen: parsed.listen,
        udp: parsed.udp,
        verbose: parsed.verbose,
        wait,
        host,
        port,
    })
}

fn netcat_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if wants_help(args) {
        return print_help(ctx, "netcat");
    }
    let options = netcat_options(args)?;
    let stdin = ctx
        .input
        .open()
        .map_err(|e| anyhow::anyhow!("stdin: {}", crate::util::io_error(&e)))?;
    let interrupts = ctx.interrupts();
    // The future writes to the command's output while ctx lends the
    // runtime, so the Output is moved out of ctx for the duration.
    // Uninterrupted: netcat ends itself on Ctrl-C, keeping what arrived.
    let mut out = std::mem::replace(&mut *ctx.out, Output::memory());
    let result = ctx.block_on_uninterrupted(netcat::run(&options, stdin, &mut out, interrupts));
    *ctx.out = out;
    let outcome = result?;
    match outcome {
        netcat::Outcome::Done => Ok(0),
        netcat::Outcome::Interrupted => Err(Interrupted.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ping_count_forms() {
        let (dest, o) = ping_options(&args("10.0.0.2")).unwrap();
        assert_eq!((dest.as_str(), o.count, o.size), ("10.0.0.2", 4, 56));
        assert_eq!(ping_options(&args("10.0.0.2 3")).unwrap().1.count, 3);
        assert_eq!(ping_options(&args("-c 2 10.0.0.2")).unwrap().1.count, 2);
        assert_eq!(ping_options(&args("10.0.0.2 -c 2")).unwrap().1.count, 2);
        assert!(ping_options(&args("-c 2 10.0.0.2 3")).is_err());
        assert!(ping_options(&args("10.0.0.2 0")).is_err());
        assert!(ping_options(&args("")).is_err());
        assert!(ping_options(&args("a b c")).is_err());
    }

    #[test]
    fn ping_options_parse() {
        let (_, o) = ping_options(&args("-6 -i 0.2 -s 200 -W 3 -I veth0 fe80::1")).unwrap();
        assert_eq!(o.interval, Duration::from_millis(200));
        assert_eq!(o.size, 200);
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.iface.as_deref(), Some("veth0"));
        assert_eq!(o.family, Some(ping::Family::V6));
        assert!(ping_options(&args("-i 0 10.0.0.1")).is_err());
        assert!(ping_options(&args("-i x 10.0.0.1")).is_err());
        assert!(ping_options(&args("-s -1 10.0.0.1")).is_err());
        assert!(ping_options(&args("-s 70000 10.0.0.1")).is_err());
        assert!(ping_options(&args("-4 -6 10.0.0.1")).is_err());
    }

    #[test]
    fn netcat_forms() {
        let o = netcat_options(&args("10.0.0.2 80")).unwrap();
        assert_eq!(
            (o.host.as_deref(), o.port, o.listen),
            (Some("10.0.0.2"), 80, false)
        );
        let o = netcat_options(&args("-l 5000")).unwrap();
        assert_eq!((o.host, o.port, o.listen), (None, 5000, true));
        let o = netcat_options(&args("-l -u -v -w 1.5 10.0.0.1 5000")).unwrap();
        assert!(o.udp && o.verbose);
        assert_eq!(o.wait, Some(Duration::from_millis(1500)));
        assert_eq!(o.host.as_deref(), Some("10.0.0.1"));
        assert!(netcat_options(&args("10.0.0.2")).is_err());
        assert!(netcat_options(&args("10.0.0.2 http"))
            .unwrap_err()
            .to_string()
            .contains("bad port"));
        assert!(netcat_options(&args("10.0.0.2 0")).is_err());
        assert!(netcat_options(&args("-w 0 10.0.0.2 80")).is_err());
        assert!(netcat_options(&args("a b c")).is_err());
    }
}
