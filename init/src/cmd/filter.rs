//! `filter -d EXPR` and `filter check EXPR`: the classic BPF program an
//! expression compiles to, as `tcpdump -d` lists it, or where it is wrong;
//! `filter cost EXPR`: what its eBPF translation costs in the kernel.

use std::io::Write;

use std::os::fd::AsFd as _;

use anyhow::Context as _;

use super::{usage, CommandSpec};
use crate::ebpf::raw;
use crate::filter::ebpf::{translate, Hook, Verdict};
use crate::filter::{Filter, Link};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "filter",
    usage: "filter -d [-y EN10MB|RAW] EXPR...\nfilter check [-y EN10MB|RAW] EXPR...\nfilter cost [-y EN10MB|RAW] [--runs N] EXPR...",
    summary: "compile a pcap-filter expression: its classic BPF program, or where it is wrong",
    help: "The expression is the trailing words, as tcpdump takes it, in the pcap-filter(7)\n\
           language: host, net, port, portrange (with src/dst), ether host|src|dst|proto|\n\
           broadcast|multicast, vlan [ID], ip, ip6, arp, rarp, tcp, udp, icmp, icmp6, sctp,\n\
           proto N, ip proto N, ip6 proto N, greater N, less N, len and byte tests such as\n\
           tcp[tcpflags] & tcp-syn != 0, with and/or/not and parentheses; libpcap's meaning.\n\
           -y picks the link: EN10MB (Ethernet, the default) or RAW (IP without a link header).\n\
           -d prints the program as `tcpdump -d` does; check says ok or the column at fault.\n\
           cost translates the program to eBPF as capture and droptrace run it at TC, loads\n\
           it and has the kernel run it N times (default 1000000, BPF_PROG_TEST_RUN) on each\n\
           of a few sample packets: the verdict and the mean ns per run, beside an empty\n\
           program's (the harness's own cost). Needs root.\n\
           Example: filter -d tcp port 80 and host 10.0.0.1",
    run: filter_cmd,
    cli: None,
}];

#[derive(PartialEq)]
enum Mode {
    Dump,
    Check,
    Cost,
}

fn filter_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let mut words: Vec<&str> = args.iter().map(String::as_str).collect();
    let mode = match words.first() {
        Some(&"-d") => Mode::Dump,
        Some(&"check") => Mode::Check,
        Some(&"cost") => Mode::Cost,
        _ => return Err(usage("expected -d, check or cost, then the expression")),
    };
    words.remove(0);
    let mut link = Link::Ethernet;
    let mut runs = 1_000_000u32;
    loop {
        match words.first() {
            Some(&"-y") => {
                link = match words.get(1) {
                    Some(&"EN10MB") => Link::Ethernet,
                    Some(&"RAW") => Link::RawIp,
                    Some(other) => return Err(usage(format!("-y {other}: EN10MB or RAW"))),
                    None => return Err(usage("-y needs EN10MB or RAW")),
                };
            }
            Some(&"--runs") if mode == Mode::Cost => {
                runs = match words.get(1).map(|w| w.parse::<u32>()) {
                    Some(Ok(n)) if n > 0 => n,
                    _ => return Err(usage("--runs needs a number of runs above 0")),
                };
            }
            _ => break,
        }
        words.drain(..2);
    }
    if words.is_empty() {
        return Err(usage("missing the expression"));
    }
    let filter = Filter::compile(&words.join(" "), link)?;
    match mode {
        Mode::Dump => ctx.out.write_all(filter.listing().as_bytes())?,
        Mode::Check => writeln!(
            ctx.out,
            "filter: ok ({} instructions)",
            filter.program.len()
        )?,
        Mode::Cost => cost(ctx, &filter, link, runs)?,
    }
    Ok(0)
}

/// Loads the program as TC would run it and times it in the kernel on
/// each sample packet.
fn cost(ctx: &mut Ctx<'_>, filter: &Filter, link: Link, runs: u32) -> anyhow::Result<()> {
    let kind = raw::ProgramKind::SCHED_CLS;
    let insns = translate(
        &filter.program,
        None,
        Hook::Tc { base_map: None },
        Verdict::Return,
    )?;
    let program = raw::load("filter_cost", kind, &insns)?;
    // The floor: a program that only returns, run the same way.
    let empty = raw::load(
        "filter_empty",
        kind,
        &[
            raw::Insn {
                code: 0xb4,
                ..Default::default()
            },
            raw::Insn {
                code: 0x95,
                ..Default::default()
            },
        ],
    )?;
    writeln!(
        ctx.out,
        "filter: {} classic instructions, {} eBPF instructions; {runs} runs per packet",
        filter.program.len(),
        insns.len()
    )?;
    for (name, frame) in samples(link) {
        let (verdict, ns) = raw::test_run(&program.as_fd(), &frame, runs)
            .with_context(|| format!("running the filter on {name}"))?;
        let (_, floor) = raw::test_run(&empty.as_fd(), &frame, runs)?;
        writeln!(
            ctx.out,
            "  {name:<34} {:<9} {ns:>4} ns (empty program {floor} ns)",
            if verdict != 0 { "match" } else { "no match" }
        )?;
    }
    Ok(())
}

/// A few everyday packets: Ethernet frames, or their IP part on raw IP.
fn samples(link: Link) -> Vec<(&'static str, Vec<u8>)> {
    use etherparse::PacketBuilder;
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let v6 = |last: u8| {
        let mut ip = [0u8; 16];
        ip[0] = 0xfd;
        ip[15] = last;
        ip
    };
    let mut out = Vec::new();
    let mut push = |name: &'static str, frame: Vec<u8>| {
        let bytes = match link {
            Link::Ethernet => frame,
            Link::RawIp => frame[14..].to_vec(),
        };
        out.push((name, bytes));
    };
    let mut frame = Vec::new();
    let _ = PacketBuilder::ethernet2(a, b)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 65535)
        .syn()
        .write(&mut frame, &[]);
    push(
        "ipv4 tcp 10.0.0.1.40000 > .2.80 SYN",
        std::mem::take(&mut frame),
    );
    let _ = PacketBuilder::ethernet2(a, b)
        .ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64)
        .udp(5353, 53)
        .write(&mut frame, &[0; 22]);
    push(
        "ipv4 udp 10.0.0.1.5353 > 8.8.8.8.53",
        std::mem::take(&mut frame),
    );
    let _ = PacketBuilder::ethernet2(a, b)
        .ipv6(v6(1), v6(2), 64)
        .udp(5353, 53)
        .write(&mut frame, &[0; 22]);
    push(
        "ipv6 udp fd00::1.5353 > fd00::2.53",
        std::mem::take(&mut frame),
    );
    let _ = PacketBuilder::ethernet2(a, b)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 9], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut frame, &[0; 32]);
    push("ipv4 icmp echo 10.0.0.1 > 10.0.0.9", frame);
    out
}
