//! `ifconfig`: shows interfaces net-tools style, or sets an interface's
//! addresses and flags over rtnetlink (net/netlink.rs). The whole line is
//! parsed and checked first, so a bad word changes nothing.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::anyhow;

use super::{usage, CommandSpec};
use crate::net::iface::{self, ifindex, Addr, Link};
use crate::net::netlink::{LinkChange, Netlink};
use crate::packet::mac::{hw_addr_lower, MacAddr};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ifconfig",
        usage: "ifconfig [-a]\n\
                ifconfig IF\n\
                ifconfig IF [IP[/LEN] [netmask MASK]] [ADDR6[/LEN]] [up|down] [promisc|-promisc] [hw ether MAC] [mtu N]...",
        summary: "show interfaces, or set an interface's addresses and flags",
        help: "Without arguments: every interface, ifconfig style (flags, mtu,\n\
               addresses with decimal IPv6 prefix lengths, MAC, counters).\n\
               With settings, they are applied in the order given; the whole line is\n\
               checked first, so a bad word changes nothing.\n\
               \x20 IP[/LEN] [netmask M]  replace the IPv4 address (default /24)\n\
               \x20 ADDR6[/LEN]           add an IPv6 address (default /64)\n\
               \x20 up | down             set the interface up or down\n\
               \x20 promisc | -promisc    promiscuous mode on or off\n\
               \x20 hw ether MAC          set the MAC address\n\
               \x20 mtu N                 set the MTU\n\
               Example: ifconfig tap0 192.168.1.1 netmask 255.255.255.0 up promisc",
        run: ifconfig,
        cli: None,
    },
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum IfAction {
    /// Replace the interface's IPv4 addresses with this one.
    SetV4(Ipv4Addr, u8),
    AddV6(Ipv6Addr, u8),
    Link(LinkChange),
}

fn parse_ifconfig(words: &[String]) -> Result<Vec<IfAction>, String> {
    let mut actions = Vec::new();
    // Where the line's IPv4 address is, and whether its prefix is explicit.
    let mut v4: Option<(usize, bool)> = None;
    let mut it = words.iter().map(String::as_str);
    while let Some(word) = it.next() {
        let action = match word {
            "up" => IfAction::Link(LinkChange::Up),
            "down" => IfAction::Link(LinkChange::Down),
            "promisc" => IfAction::Link(LinkChange::Promisc(true)),
            "-promisc" => IfAction::Link(LinkChange::Promisc(false)),
            "mtu" => {
                let n = it.next().ok_or("mtu needs a value")?;
                IfAction::Link(LinkChange::Mtu(
                    iface::parse_mtu(n).map_err(|e| e.to_string())?,
                ))
            }
            "hw" => {
                match it.next() {
                    Some("ether") => {}
                    Some(other) => {
                        return Err(format!("hw {other}: only 'hw ether MAC' is supported"))
                    }
                    None => return Err("hw needs 'ether MAC'".into()),
                }
                let mac = it.next().ok_or("hw ether needs a MAC address")?;
                let mac = mac.parse::<MacAddr>().map_err(|e| e.to_string())?;
                IfAction::Link(LinkChange::Mac(mac))
            }
            "netmask" => {
                let mask = it.next().ok_or("netmask needs a value")?;
                let prefix = mask
                    .parse::<Ipv4Addr>()
                    .ok()
                    .and_then(iface::mask_to_prefix)
                    .ok_or_else(|| format!("{mask}: not a netmask"))?;
                match v4 {
                    Some((i, false)) => {
                        if let IfAction::SetV4(_, p) = &mut actions[i] {
                            *p = prefix;
                        }
                        v4 = Some((i, true));
                    }
                    Some((_, true)) => {
                        return Err("netmask given twice (or with ADDR/LEN)".into());
                    }
                    None => return Err("netmask must follow an IPv4 address".into()),
                }
                continue;
            }
            _ => {
                // net-tools' `ifconfig IF add ADDR6/LEN` spelling.
                let text = if word == "add" {
                    it.next().ok_or("add needs an IPv6 address")?
                } else {
                    word
                };
                let (addr, prefix) = iface::parse_prefix(text, 24, 64).map_err(|e| {
                    if text.contains(['.', ':', '/']) {
                        e.to_string()
                    } else {
                        format!("{word}: unknown word")
                    }
                })?;
                match addr {
                    IpAddr::V4(a) if word != "add" => {
                        if v4.is_some() {
                            return Err("more than one IPv4 address".into());
                        }
                        v4 = Some((actions.len(), text.contains('/')));
                        IfAction::SetV4(a, prefix)
                    }
                    IpAddr::V4(_) => {
                        return Err(format!("add {text}: only IPv6 addresses are added"))
                    }
                    IpAddr::V6(a) => IfAction::AddV6(a, prefix),
                }
            }
        };
        actions.push(action);
    }
    Ok(actions)
}

fn ifconfig(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    match args {
        [] => {
            let text = ctx.block_on(ifconfig_show(None))??;
            ctx.out.write_all(text.as_bytes())?;
        }
        // `-a` (all interfaces) is what plain `ifconfig` shows anyway.
        [flag] if flag == "-a" => return ifconfig(ctx, &[]),
        [name] => {
            let index = ifindex(name)?;
            let text = ctx.block_on(ifconfig_show(Some(index)))??;
            ctx.out.write_all(text.as_bytes())?;
        }
        [name, words @ ..] => {
            let actions = parse_ifconfig(words).map_err(usage)?;
            let index = ifindex(name)?;
            ctx.block_on(ifconfig_apply(name, index, actions))??;
        }
    }
    Ok(0)
}

async fn ifconfig_apply(name: &str, index: u32, actions: Vec<IfAction>) -> anyhow::Result<()> {
    let nl = Netlink::open()?;
    for action in actions {
        match action {
            IfAction::SetV4(addr, prefix) => {
                // Like SIOCSIFADDR: the new address takes the old one's place.
                for old in nl.addrs(Some(index)).await? {
                    if old.addr.is_ipv4() {
                        match nl.del_addr(&old).await {
                            // Deleting a primary also removes its secondaries.
                            Err(e) if e.errno() == Some(nix::errno::Errno::EADDRNOTAVAIL) => {}
                            r => r.map_err(|e| {
                                anyhow!("{name}: remove {}/{}: {e}", old.addr, old.prefix)
                            })?,
                        }
                    }
                }
                nl.add_addr(index, IpAddr::V4(addr), prefix)
                    .await
                    .map_err(|e| anyhow!("{name}: {addr}/{prefix}: {e}"))?;
            }
            IfAction::AddV6(addr, prefix) => nl
                .add_addr(index, IpAddr::V6(addr), prefix)
                .await
                .map_err(|e| anyhow!("{name}: {addr}/{prefix}: {e}"))?,
            IfAction::Link(change) => nl
                .set_link(index, std::slice::from_ref(&change))
                .await
                .map_err(|e| anyhow!("{name}: {}: {e}", describe_change(&change)))?,
        }
    }
    Ok(())
}

fn describe_change(change: &LinkChange) -> String {
    match change {
        LinkChange::Up => "up".into(),
        LinkChange::Down => "down".into(),
        LinkChange::Promisc(true) => "promisc".into(),
        LinkChange::Promisc(false) => "-promisc".into(),
        LinkChange::Mtu(n) => format!("mtu {n}"),
        LinkChange::Mac(mac) => format!("hw ether {}", mac.lower()),
        LinkChange::NetnsFd(_) => "netns".into(),
    }
}

async fn ifconfig_show(only: Option<u32>) -> anyhow::Result<String> {
    let nl = Netlink::open()?;
    let links = match only {
        Some(index) => vec![nl.link(index).await?],
        None => nl.links().await?,
    };
    let addrs = nl.addrs(only).await?;
    let mut text = String::new();
    for link in &links {
        let own: Vec<&Addr> = addrs.iter().filter(|a| a.index == link.index).collect();
        text.push_str(&format_ifconfig(link, &own));
    }
    Ok(text)
}

/// One interface, as net-tools' ifconfig prints it (IPv6 prefix in decimal).
fn format_ifconfig(link: &Link, addrs: &[&Addr]) -> String {
    let mut t = format!(
        "{}: {}  mtu {}\n",
        link.name,
        iface::ifconfig_flag_names(link.flags),
        link.mtu
    );
    for a in addrs {
        match a.addr {
            IpAddr::V4(v4) => {
                t.push_str(&format!(
                    "        inet {v4}  netmask {}",
                    iface::prefix_to_mask(a.prefix)
                ));
                if let Some(b) = a.broadcast {
                    t.push_str(&format!("  broadcast {b}"));
                }
                t.push('\n');
            }
            IpAddr::V6(v6) => {
                let scope = match a.scope {
                    0 => "0x0<global>",
                    200 => "0x40<site>",
                    253 => "0x20<link>",
                    254 => "0x10<host>",
                    _ => "0x0<global>",
                };
                t.push_str(&format!(
                    "        inet6 {v6}  prefixlen {}  scopeid {scope}\n",
                    a.prefix
                ));
            }
        }
    }
    let txq = link
        .txqlen
        .map(|n| format!("  txqueuelen {n}"))
        .unwrap_or_default();
    match link.link_type {
        iface::ARPHRD_ETHER => t.push_str(&format!(
            "        ether {}{txq}  (Ethernet)\n",
            link.mac.as_deref().map(hw_addr_lower).unwrap_or_default()
        )),
        iface::ARPHRD_LOOPBACK => t.push_str(&format!("        loop{txq}  (Local Loopback)\n")),
        _ => t.push_str(&format!("        unspec{txq}  (UNSPEC)\n")),
    }
    let s = &link.stats;
    t.push_str(&format!(
        "        RX packets {}  bytes {}\n        RX errors {}  dropped {}\n",
        s.rx_packets, s.rx_bytes, s.rx_errors, s.rx_dropped
    ));
    t.push_str(&format!(
        "        TX packets {}  bytes {}\n        TX errors {}  dropped {}\n\n",
        s.tx_packets, s.tx_bytes, s.tx_errors, s.tx_dropped
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ifconfig_multi_word_line_parses_in_order() {
        let actions =
            parse_ifconfig(&words("192.168.1.1 netmask 255.255.255.0 up promisc")).unwrap();
        assert_eq!(
            actions,
            vec![
                IfAction::SetV4("192.168.1.1".parse().unwrap(), 24),
                IfAction::Link(LinkChange::Up),
                IfAction::Link(LinkChange::Promisc(true)),
            ]
        );
        let actions = parse_ifconfig(&words("10.0.0.1 netmask 255.255.0.0")).unwrap();
        assert_eq!(
            actions,
            vec![IfAction::SetV4("10.0.0.1".parse().unwrap(), 16)]
        );
    }

    #[test]
    fn ifconfig_defaults_and_other_words() {
        assert_eq!(
            parse_ifconfig(&words("10.0.0.1")).unwrap(),
            vec![IfAction::SetV4("10.0.0.1".parse().unwrap(), 24)]
        );
        assert_eq!(
            parse_ifconfig(&words("2001:db8::1")).unwrap(),
            vec![IfAction::AddV6("2001:db8::1".parse().unwrap(), 64)]
        );
        assert_eq!(
            parse_ifconfig(&words(
                "add 2001:db8::1/56 -promisc down mtu 1400 hw ether 02:00:00:00:00:AA"
            ))
            .unwrap(),
            vec![
                IfAction::AddV6("2001:db8::1".parse().unwrap(), 56),
                IfAction::Link(LinkChange::Promisc(false)),
                IfAction::Link(LinkChange::Down),
                IfAction::Link(LinkChange::Mtu(1400)),
                IfAction::Link(LinkChange::Mac(MacAddr([2, 0, 0, 0, 0, 0xaa]))),
            ]
        );
    }

    #[test]
    fn ifconfig_bad_lines_are_refused_whole() {
        for line in [
            "up bogus",
            "mtu",
            "mtu x",
            "netmask 255.255.255.0",
            "10.0.0.1 netmask 255.0.255.0",
            "10.0.0.1/8 netmask 255.0.0.0",
            "hw ax25 02:00:00:00:00:01",
            "hw ether 02:00",
            "10.0.0.1 10.0.0.2",
            "10.0.0.1/40",
        ] {
            assert!(parse_ifconfig(&words(line)).is_err(), "{line} accepted");
        }
        assert_eq!(
            parse_ifconfig(&words("up bogus")).unwrap_err(),
            "bogus: unknown word"
        );
    }
}
