//! `filter -d EXPR` and `filter check EXPR`: the classic BPF program an
//! expression compiles to, as `tcpdump -d` lists it, or where it is wrong.

use std::io::Write;

use super::{usage, CommandSpec};
use crate::filter::{Filter, Link};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "filter",
    usage: "filter -d [-y EN10MB|RAW] EXPR...\nfilter check [-y EN10MB|RAW] EXPR...",
    summary: "compile a pcap-filter expression: its classic BPF program, or where it is wrong",
    help: "The expression is the trailing words, as tcpdump takes it, in the pcap-filter(7)\n\
           language: host, net, port, portrange (with src/dst), ether host|src|dst|proto|\n\
           broadcast|multicast, vlan [ID], ip, ip6, arp, rarp, tcp, udp, icmp, icmp6, sctp,\n\
           proto N, ip proto N, ip6 proto N, greater N, less N, len and byte tests such as\n\
           tcp[tcpflags] & tcp-syn != 0, with and/or/not and parentheses; libpcap's meaning.\n\
           -y picks the link: EN10MB (Ethernet, the default) or RAW (IP without a link header).\n\
           -d prints the program as `tcpdump -d` does; check says ok or the column at fault.\n\
           Example: filter -d tcp port 80 and host 10.0.0.1",
    run: filter_cmd,
    cli: None,
}];

fn filter_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let mut words: Vec<&str> = args.iter().map(String::as_str).collect();
    let dump = match words.first() {
        Some(&"-d") => true,
        Some(&"check") => false,
        _ => return Err(usage("expected -d or check, then the expression")),
    };
    words.remove(0);
    let mut link = Link::Ethernet;
    if words.first() == Some(&"-y") {
        link = match words.get(1) {
            Some(&"EN10MB") => Link::Ethernet,
            Some(&"RAW") => Link::RawIp,
            Some(other) => return Err(usage(format!("-y {other}: EN10MB or RAW"))),
            None => return Err(usage("-y needs EN10MB or RAW")),
        };
        words.drain(..2);
    }
    if words.is_empty() {
        return Err(usage("missing the expression"));
    }
    let filter = Filter::compile(&words.join(" "), link)?;
    if dump {
        ctx.out.write_all(filter.listing().as_bytes())?;
    } else {
        writeln!(
            ctx.out,
            "filter: ok ({} instructions)",
            filter.program.len()
        )?;
    }
    Ok(0)
}
