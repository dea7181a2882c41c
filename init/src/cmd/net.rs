//! Network configuration: `ifconfig`, `tap` and `ip`, all over rtnetlink
//! (net/netlink.rs) except TAP creation (/dev/net/tun, net/tap.rs).
//! Every command parses and checks its whole line first, so a bad word
//! changes nothing.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::anyhow;

use super::{usage, CommandSpec};
use crate::net::iface::{self, ifindex, Addr, Link, Neigh, Route};
use crate::net::netlink::{LinkChange, Netlink, NlError, RouteSpec};
use crate::net::tap;
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
    CommandSpec {
        name: "tap",
        usage: "tap add NAME\ntap del NAME\ntap show",
        summary: "create, remove or list TAP interfaces",
        help: "`tap add` creates a TAP device (Ethernet frames, no packet-info header)\n\
               through /dev/net/tun and keeps it open: the interface lives until\n\
               `tap del` closes it, or myinit ends. It starts down; use\n\
               `ifconfig NAME up` or `ip link set NAME up`.\n\
               `tap show` lists the TAPs made here, with index and state.",
        run: tap_cmd,
        cli: None,
    },
    CommandSpec {
        name: "ip",
        usage: "ip [-4|-6] route [show] [dev IF]\n\
                ip [-4|-6] route add|replace|del DST|default [via GW] [dev IF] [metric N] [src ADDR]\n\
                ip [-4|-6] addr [show] [[dev] IF]\n\
                ip addr add|del ADDR[/LEN] dev IF\n\
                ip link [show] [[dev] IF]\n\
                ip link set [dev] IF [up|down] [mtu N] [address MAC] [promisc on|off]...\n\
                ip [-4|-6] neigh [show] [dev IF]\n\
                ip neigh add|replace IP lladdr MAC dev IF [nud STATE]\n\
                ip neigh del IP dev IF\n\
                ip [-4|-6] neigh flush dev IF",
        summary: "show and change routes, addresses, links and neighbours (iproute2 style)",
        help: "Objects and verbs may be abbreviated as in iproute2: ip r, ip a, ip l,\n\
               ip n, ip r d. The family comes from -4/-6 or from the addresses given.\n\
               Prefix lengths are decimal; ADDR without /LEN in `addr add` is a host\n\
               address (/32, /128). `route show` lists the main table.\n\
               `neigh flush dev IF` removes every entry of IF, permanent ones too\n\
               (iproute2 keeps permanent entries unless given `nud all`).",
        run: ip,
        cli: None,
    },
];

// ---------------------------------------------------------------- ifconfig

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
                IfAction::Link(LinkChange::Mtu(parse_mtu(n)?))
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
                let mac = parse_mac_word(mac)?;
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
                        e
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
        LinkChange::Mac(mac) => format!("hw ether {}", iface::format_mac(mac)),
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
            link.mac
                .as_deref()
                .map(iface::format_mac)
                .unwrap_or_default()
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

// --------------------------------------------------------------------- tap

fn tap_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let state = ctx.state();
    match args {
        [verb, name] if verb == "add" => {
            if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
                return Err(usage(format!(
                    "{name}: an interface name is 1 to {} bytes, without '/'",
                    libc::IFNAMSIZ - 1
                )));
            }
            let mut taps = state.taps.lock().unwrap_or_else(|e| e.into_inner());
            if taps.contains(name) {
                return Err(anyhow!("{name}: tap already exists"));
            }
            if iface::exists(name) {
                return Err(anyhow!("{name}: an interface of that name already exists"));
            }
            let fd = tap::create(name).map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EEXIST) => {
                    anyhow!("{name}: an interface of that name already exists")
                }
                _ => anyhow!("{name}: /dev/net/tun: {}", crate::util::io_error(&e)),
            })?;
            taps.add(name, fd);
        }
        [verb, name] if verb == "del" || verb == "delete" => {
            let fd = state
                .taps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            match fd {
                // Closing the last fd unregisters the interface.
                Some(fd) => drop(fd),
                None if iface::exists(name) => {
                    return Err(anyhow!("{name}: not a TAP made by 'tap add'"));
                }
                None => return Err(anyhow!("{name}: no such tap")),
            }
        }
        [] => tap_show(ctx)?,
        [verb] if verb == "show" || verb == "list" => tap_show(ctx)?,
        [verb, ..] if ["add", "del", "delete", "show", "list"].contains(&verb.as_str()) => {
            return Err(usage(format!("{verb}: wrong number of arguments")));
        }
        [verb, ..] => return Err(usage(format!("{verb}: unknown subcommand"))),
    }
    Ok(0)
}

fn tap_show(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let names = ctx
        .state()
        .taps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .names();
    let links = ctx.block_on(async {
        let nl = Netlink::open()?;
        anyhow::Ok(nl.links().await?)
    })??;
    let mut text = format!(
        "{:<16} {:>7}  {:<5} {:<14} {}\n",
        "NAME", "IFINDEX", "ADMIN", "OPER", "MAC"
    );
    for name in names {
        match links.iter().find(|l| l.name == name) {
            Some(l) => text.push_str(&format!(
                "{:<16} {:>7}  {:<5} {:<14} {}\n",
                name,
                l.index,
                if l.flags & iface::IFF_UP != 0 {
                    "up"
                } else {
                    "down"
                },
                l.oper,
                l.mac.as_deref().map(iface::format_mac).unwrap_or_default()
            )),
            // Removed behind our back (ip link del); the fd is detached.
            None => text.push_str(&format!(
                "{name:<16} {:>7}  {:<5} {:<14}\n",
                "-", "-", "gone"
            )),
        }
    }
    ctx.out.write_all(text.as_bytes())?;
    Ok(())
}

// ---------------------------------------------------------------------- ip

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn allows(self, addr: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RouteArgs {
    v6: bool,
    dst: Option<(IpAddr, u8)>,
    gateway: Option<IpAddr>,
    dev: Option<String>,
    metric: Option<u32>,
    src: Option<IpAddr>,
}

impl RouteArgs {
    /// The netlink request for these words, with `dev` resolved to `oif`.
    fn spec(&self, oif: Option<u32>) -> RouteSpec {
        RouteSpec {
            v6: self.v6,
            dst: self.dst,
            gateway: self.gateway,
            oif,
            metric: self.metric,
            src: self.src,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum IpCmd {
    RouteShow {
        v6: bool,
        dev: Option<String>,
    },
    RouteAdd {
        route: RouteArgs,
        replace: bool,
    },
    RouteDel(RouteArgs),
    AddrShow {
        family: Family,
        dev: Option<String>,
    },
    AddrAdd {
        addr: IpAddr,
        prefix: u8,
        dev: String,
    },
    AddrDel {
        addr: IpAddr,
        prefix: Option<u8>,
        dev: String,
    },
    LinkShow {
        dev: Option<String>,
    },
    LinkSet {
        dev: String,
        changes: Vec<LinkChange>,
    },
    NeighShow {
        family: Family,
        dev: Option<String>,
    },
    NeighAdd {
        dst: IpAddr,
        lladdr: [u8; 6],
        dev: String,
        state: u16,
        replace: bool,
    },
    NeighDel {
        dst: IpAddr,
        dev: String,
    },
    NeighFlush {
        family: Family,
        dev: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Show,
    Add,
    Replace,
    Del,
    Flush,
    Set,
}

/// iproute2's abbreviation rule: a word matches a keyword it is a prefix of.
fn matches(word: &str, keyword: &str) -> bool {
    !word.is_empty() && keyword.starts_with(word)
}

fn parse_verb(word: &str) -> Option<Verb> {
    Some(
        if matches(word, "show") || matches(word, "list") || word == "lst" {
            Verb::Show
        } else if matches(word, "add") {
            Verb::Add
        } else if matches(word, "delete") {
            Verb::Del
        } else if matches(word, "replace") {
            Verb::Replace
        } else if matches(word, "flush") {
            Verb::Flush
        } else if word == "set" {
            Verb::Set
        } else {
            return None;
        },
    )
}

fn parse_addr(word: &str) -> Result<IpAddr, String> {
    word.parse()
        .map_err(|_| format!("{word}: not an IP address"))
}

fn parse_mtu(word: &str) -> Result<u32, String> {
    match word.parse::<u32>() {
        Ok(mtu) if mtu > 0 => Ok(mtu),
        _ => Err(format!("{word}: bad mtu")),
    }
}

fn parse_mac_word(word: &str) -> Result<[u8; 6], String> {
    iface::parse_mac(word).ok_or_else(|| format!("{word}: not a MAC address"))
}

fn next_value<'a>(it: &mut impl Iterator<Item = &'a str>, key: &str) -> Result<&'a str, String> {
    it.next().ok_or_else(|| format!("{key} needs a value"))
}

fn parse_ip(args: &[String]) -> Result<IpCmd, String> {
    let mut family = Family::Any;
    let mut words = args.iter().map(String::as_str).peekable();
    while let Some(opt) = words.peek().copied().filter(|w| w.starts_with('-')) {
        let wanted = match opt {
            "-4" => Family::V4,
            "-6" => Family::V6,
            _ => return Err(format!("{opt}: unknown option")),
        };
        if family != Family::Any && family != wanted {
            return Err("-4 and -6 exclude each other".into());
        }
        family = wanted;
        words.next();
    }
    let object = words
        .next()
        .ok_or("missing object (route, addr, link or neigh)")?;
    let rest: Vec<&str> = words.collect();
    let (verb, rest) = match rest.split_first() {
        None => (Verb::Show, &rest[..]),
        Some((first, tail)) => match parse_verb(first) {
            Some(v) => (v, tail),
            None => (Verb::Show, &rest[..]),
        },
    };
    if matches(object, "address") {
        parse_ip_addr(family, verb, rest)
    } else if matches(object, "route") {
        parse_ip_route(family, verb, rest)
    } else if matches(object, "link") {
        parse_ip_link(verb, rest)
    } else if matches(object, "neighbour") || matches(object, "neighbor") {
        parse_ip_neigh(family, verb, rest)
    } else {
        Err(format!(
            "{object}: unknown object (route, addr, link or neigh)"
        ))
    }
}

/// `[dev] IF` of the show forms.
fn parse_show_dev(rest: &[&str]) -> Result<Option<String>, String> {
    match rest {
        [] => Ok(None),
        ["dev", name] => Ok(Some(name.to_string())),
        [name] if *name != "dev" => Ok(Some(name.to_string())),
        _ => Err(format!("{}: unexpected arguments", rest.join(" "))),
    }
}

fn parse_ip_route(family: Family, verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
    if verb == Verb::Show {
        let dev = match rest {
            [] => None,
            ["dev", name] => Some(name.to_string()),
            _ => return Err(format!("{}: unexpected arguments", rest.join(" "))),
        };
        return Ok(IpCmd::RouteShow {
            v6: family == Family::V6,
            dev,
        });
    }
    if !matches!(verb, Verb::Add | Verb::Replace | Verb::Del) {
        return Err("route: expected show, add, replace or del".into());
    }
    let mut route = RouteArgs::default();
    let mut dst_seen = false;
    let mut it = rest.iter().copied();
    while let Some(word) = it.next() {
        match word {
            "via" => route.gateway = Some(parse_addr(next_value(&mut it, "via")?)?),
            "dev" | "oif" => route.dev = Some(next_value(&mut it, word)?.to_string()),
            "metric" | "priority" | "preference" => {
                let n = next_value(&mut it, word)?;
                route.metric = Some(n.parse().map_err(|_| format!("{n}: bad metric"))?);
            }
            "src" => route.src = Some(parse_addr(next_value(&mut it, "src")?)?),
            _ if dst_seen => return Err(format!("{word}: unknown word")),
            "to" => continue,
            "default" | "all" => dst_seen = true,
            _ => {
                let (addr, prefix) = iface::parse_prefix(word, 32, 128)?;
                let network = iface::network_of(addr, prefix);
                if network != addr {
                    return Err(format!(
                        "{word}: host bits set (did you mean {network}/{prefix}?)"
                    ));
                }
                // 0.0.0.0/0 is the default route too.
                route.dst = (prefix > 0).then_some((addr, prefix));
                dst_seen = true;
            }
        }
    }
    if !dst_seen {
        return Err("missing destination (PREFIX or default)".into());
    }
    let mut v6 = None;
    for addr in [route.dst.map(|(a, _)| a), route.gateway, route.src]
        .into_iter()
        .flatten()
    {
        if v6.is_some_and(|v| v != addr.is_ipv6()) {
            return Err("IPv4 and IPv6 addresses mixed".into());
        }
        v6 = Some(addr.is_ipv6());
    }
    route.v6 = match (family, v6) {
        (Family::V4, Some(true)) | (Family::V6, Some(false)) => {
            return Err("address family does not match -4/-6".into());
        }
        (_, Some(v)) => v,
        (f, None) => f == Family::V6,
    };
    if verb != Verb::Del && route.gateway.is_none() && route.dev.is_none() {
        return Err("need 'via GW' or 'dev IF'".into());
    }
    Ok(match verb {
        Verb::Del => IpCmd::RouteDel(route),
        _ => IpCmd::RouteAdd {
            route,
            replace: verb == Verb::Replace,
        },
    })
}

fn parse_ip_addr(family: Family, verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
    match verb {
        Verb::Show => Ok(IpCmd::AddrShow {
            family,
            dev: parse_show_dev(rest)?,
        }),
        Verb::Add | Verb::Del => {
            let mut addr = None;
            let mut dev = None;
            let mut it = rest.iter().copied();
            while let Some(word) = it.next() {
                match word {
                    "dev" => dev = Some(next_value(&mut it, "dev")?.to_string()),
                    "local" => addr = Some(next_value(&mut it, "local")?),
                    _ if addr.is_none() => addr = Some(word),
                    _ => return Err(format!("{word}: unknown word")),
                }
            }
            let text = addr.ok_or("missing ADDR/LEN")?;
            let dev = dev.ok_or("missing 'dev IF'")?;
            let (addr, prefix) = iface::parse_prefix(text, 32, 128)?;
            if !family.allows(&addr) {
                return Err("address family does not match -4/-6".into());
            }
            Ok(if verb == Verb::Add {
                IpCmd::AddrAdd { addr, prefix, dev }
            } else {
                let prefix = text.contains('/').then_some(prefix);
                IpCmd::AddrDel { addr, prefix, dev }
            })
        }
        _ => Err("addr: expected show, add or del".into()),
    }
}

fn parse_ip_link(verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
    match verb {
        Verb::Show => Ok(IpCmd::LinkShow {
            dev: parse_show_dev(rest)?,
        }),
        Verb::Set => {
            let mut it = rest.iter().copied();
            let mut dev = match it.next() {
                Some("dev") => Some(next_value(&mut it, "dev")?.to_string()),
                Some(name) => Some(name.to_string()),
                None => None,
            };
            let mut changes = Vec::new();
            while let Some(word) = it.next() {
                changes.push(match word {
                    "up" => LinkChange::Up,
                    "down" => LinkChange::Down,
                    "mtu" => LinkChange::Mtu(parse_mtu(next_value(&mut it, "mtu")?)?),
                    "address" => {
                        let mac = next_value(&mut it, "address")?;
                        LinkChange::Mac(parse_mac_word(mac)?)
                    }
                    "promisc" => match next_value(&mut it, "promisc")? {
                        "on" => LinkChange::Promisc(true),
                        "off" => LinkChange::Promisc(false),
                        other => return Err(format!("promisc {other}: expected on or off")),
                    },
                    "dev" if dev.is_none() => {
                        dev = Some(next_value(&mut it, "dev")?.to_string());
                        continue;
                    }
                    _ => return Err(format!("{word}: unknown word")),
                });
            }
            let dev = dev.ok_or("missing IF")?;
            if changes.is_empty() {
                return Err("nothing to set".into());
            }
            Ok(IpCmd::LinkSet { dev, changes })
        }
        _ => Err("link: expected show or set".into()),
    }
}

fn parse_ip_neigh(family: Family, verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
    let mut dst = None;
    let mut dev = None;
    let mut lladdr = None;
    let mut state = iface::NUD_PERMANENT;
    let mut it = rest.iter().copied();
    while let Some(word) = it.next() {
        match word {
            "dev" => dev = Some(next_value(&mut it, "dev")?.to_string()),
            "lladdr" if matches!(verb, Verb::Add | Verb::Replace) => {
                let mac = next_value(&mut it, "lladdr")?;
                lladdr = Some(parse_mac_word(mac)?);
            }
            "nud" if matches!(verb, Verb::Add | Verb::Replace) => {
                let s = next_value(&mut it, "nud")?;
                state = iface::parse_nud(s).ok_or_else(|| format!("nud {s}: unknown state"))?;
            }
            "to" if dst.is_none() && !matches!(verb, Verb::Show | Verb::Flush) => {
                dst = Some(parse_addr(next_value(&mut it, "to")?)?);
            }
            _ if dst.is_none() && !matches!(verb, Verb::Show | Verb::Flush) => {
                dst = Some(parse_addr(word)?);
            }
            _ => return Err(format!("{word}: unknown word")),
        }
    }
    match verb {
        Verb::Show => Ok(IpCmd::NeighShow { family, dev }),
        Verb::Flush => Ok(IpCmd::NeighFlush {
            family,
            dev: dev.ok_or("flush needs 'dev IF'")?,
        }),
        Verb::Add | Verb::Replace | Verb::Del => {
            let dst = dst.ok_or("missing IP")?;
            let dev = dev.ok_or("missing 'dev IF'")?;
            if !family.allows(&dst) {
                return Err("address family does not match -4/-6".into());
            }
            if verb == Verb::Del {
                return Ok(IpCmd::NeighDel { dst, dev });
            }
            Ok(IpCmd::NeighAdd {
                dst,
                lladdr: lladdr.ok_or("missing 'lladdr MAC'")?,
                dev,
                state,
                replace: verb == Verb::Replace,
            })
        }
        Verb::Set => Err("neigh: expected show, add, replace, del or flush".into()),
    }
}

fn ip(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let cmd = parse_ip(args).map_err(usage)?;
    let text = ctx.block_on(run_ip(cmd))??;
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn opt_index(dev: &Option<String>) -> anyhow::Result<Option<u32>> {
    dev.as_deref().map(ifindex).transpose()
}

async fn names(nl: &Netlink) -> anyhow::Result<HashMap<u32, String>> {
    Ok(nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect())
}

fn route_text(route: &RouteArgs) -> String {
    let mut t = match route.dst {
        Some((a, p)) => format!("{a}/{p}"),
        None => "default".into(),
    };
    if let Some(gw) = route.gateway {
        t.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = &route.dev {
        t.push_str(&format!(" dev {dev}"));
    }
    t
}

async fn run_ip(cmd: IpCmd) -> anyhow::Result<String> {
    // Resolve names before opening netlink so that a wrong name is the error.
    let mut out = String::new();
    match cmd {
        IpCmd::RouteShow { v6, dev } => {
            let oif = opt_index(&dev)?;
            let nl = Netlink::open()?;
            let names = names(&nl).await?;
            for r in nl.routes(v6).await? {
                if r.table != iface::RT_TABLE_MAIN || oif.is_some_and(|i| r.oif != Some(i)) {
                    continue;
                }
                out.push_str(&format_route(&r, &names));
            }
        }
        IpCmd::RouteAdd { route, replace } => {
            let oif = opt_index(&route.dev)?;
            let nl = Netlink::open()?;
            let spec = route.spec(oif);
            nl.add_route(&spec, replace)
                .await
                .map_err(|e| anyhow!("route {}: {e}", route_text(&route)))?;
        }
        IpCmd::RouteDel(route) => {
            let oif = opt_index(&route.dev)?;
            let nl = Netlink::open()?;
            // The source address does not select the route to delete.
            let spec = RouteSpec {
                src: None,
                ..route.spec(oif)
            };
            nl.del_route(&spec).await.map_err(|e| match e.errno() {
                Some(nix::errno::Errno::ESRCH) => {
                    anyhow!("route {}: no such route", route_text(&route))
                }
                _ => anyhow!("route {}: {e}", route_text(&route)),
            })?;
        }
        IpCmd::AddrShow { family, dev } => {
            let index = opt_index(&dev)?;
            let nl = Netlink::open()?;
            out = addr_show(&nl, family, index, true).await?;
        }
        IpCmd::LinkShow { dev } => {
            let index = opt_index(&dev)?;
            let nl = Netlink::open()?;
            out = addr_show(&nl, Family::Any, index, false).await?;
        }
        IpCmd::AddrAdd { addr, prefix, dev } => {
            let index = ifindex(&dev)?;
            let nl = Netlink::open()?;
            nl.add_addr(index, addr, prefix)
                .await
                .map_err(|e| anyhow!("{addr}/{prefix} dev {dev}: {e}"))?;
        }
        IpCmd::AddrDel { addr, prefix, dev } => {
            let index = ifindex(&dev)?;
            let nl = Netlink::open()?;
            let found = nl
                .addrs(Some(index))
                .await?
                .into_iter()
                .find(|a| a.addr == addr && prefix.is_none_or(|p| p == a.prefix));
            let shown = match prefix {
                Some(p) => format!("{addr}/{p}"),
                None => addr.to_string(),
            };
            let found = found.ok_or_else(|| anyhow!("{shown}: no such address on {dev}"))?;
            nl.del_addr(&found)
                .await
                .map_err(|e| anyhow!("{shown} dev {dev}: {e}"))?;
        }
        IpCmd::LinkSet { dev, changes } => {
            let index = ifindex(&dev)?;
            let nl = Netlink::open()?;
            nl.set_link(index, &changes)
                .await
                .map_err(|e| anyhow!("{dev}: {e}"))?;
        }
        IpCmd::NeighShow { family, dev } => {
            let index = opt_index(&dev)?;
            let nl = Netlink::open()?;
            let names = names(&nl).await?;
            for n in nl.neighs().await? {
                if family.allows(&n.dst) && index.is_none_or(|i| i == n.index) {
                    out.push_str(&format_neigh(&n, &names));
                }
            }
        }
        IpCmd::NeighAdd {
            dst,
            lladdr,
            dev,
            state,
            replace,
        } => {
            let index = ifindex(&dev)?;
            let nl = Netlink::open()?;
            nl.add_neigh(index, dst, &lladdr, state, replace)
                .await
                .map_err(|e| anyhow!("{dst} dev {dev}: {e}"))?;
        }
        IpCmd::NeighDel { dst, dev } => {
            let index = ifindex(&dev)?;
            let nl = Netlink::open()?;
            nl.del_neigh(index, dst)
                .await
                .map_err(|e| match e.errno() {
                    Some(nix::errno::Errno::ENOENT) => anyhow!("{dst}: no such neighbour on {dev}"),
                    _ => anyhow!("{dst} dev {dev}: {e}"),
                })?;
        }
        IpCmd::NeighFlush { family, dev } => {
            let index = ifindex(&dev)?;
            let nl = Netlink::open()?;
            for n in nl.neighs().await? {
                // NOARP entries are the kernel's own (multicast, broadcast).
                if n.index != index || !family.allows(&n.dst) || n.state & iface::NUD_NOARP != 0 {
                    continue;
                }
                match nl.del_neigh(index, n.dst).await {
                    Err(e) if e.errno() == Some(nix::errno::Errno::ENOENT) => {}
                    r => r.map_err(|e: NlError| anyhow!("{} dev {dev}: {e}", n.dst))?,
                }
            }
        }
    }
    Ok(out)
}

fn format_route(r: &Route, names: &HashMap<u32, String>) -> String {
    let mut t = String::new();
    if r.kind != iface::RTN_UNICAST {
        t.push_str(&iface::route_type_name(r.kind));
        t.push(' ');
    }
    let max = if r.v6 { 128 } else { 32 };
    match r.dst {
        None if r.prefix == 0 => t.push_str("default"),
        Some(dst) if r.prefix == max => t.push_str(&dst.to_string()),
        Some(dst) => t.push_str(&format!("{dst}/{}", r.prefix)),
        None => t.push_str(&format!(
            "{}/{}",
            if r.v6 { "::" } else { "0.0.0.0" },
            r.prefix
        )),
    }
    if let Some(gw) = r.gateway {
        t.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        let name = names
            .get(&oif)
            .cloned()
            .unwrap_or_else(|| format!("if{oif}"));
        t.push_str(&format!(" dev {name}"));
    }
    if r.protocol != iface::RTPROT_BOOT {
        t.push_str(&format!(" proto {}", iface::protocol_name(r.protocol)));
    }
    if r.scope != 0 {
        t.push_str(&format!(" scope {}", iface::scope_name(r.scope)));
    }
    if let Some(src) = r.prefsrc {
        t.push_str(&format!(" src {src}"));
    }
    if let Some(metric) = r.metric {
        t.push_str(&format!(" metric {metric}"));
    }
    t.push('\n');
    t
}

fn format_neigh(n: &Neigh, names: &HashMap<u32, String>) -> String {
    let name = names
        .get(&n.index)
        .cloned()
        .unwrap_or_else(|| format!("if{}", n.index));
    let mut t = format!("{} dev {name}", n.dst);
    if let Some(ll) = &n.lladdr {
        t.push_str(&format!(" lladdr {}", iface::format_mac(ll)));
    }
    if n.router {
        t.push_str(" router");
    }
    t.push_str(&format!(" {}\n", iface::nud_names(n.state)));
    t
}

/// `ip addr show` (with addresses) or `ip link show` (without).
async fn addr_show(
    nl: &Netlink,
    family: Family,
    index: Option<u32>,
    with_addrs: bool,
) -> anyhow::Result<String> {
    let links = match index {
        Some(i) => vec![nl.link(i).await?],
        None => nl.links().await?,
    };
    let addrs = if with_addrs {
        nl.addrs(index).await?
    } else {
        Vec::new()
    };
    let mut t = String::new();
    for link in &links {
        let own: Vec<&Addr> = addrs
            .iter()
            .filter(|a| a.index == link.index && family.allows(&a.addr))
            .collect();
        // Like iproute2: with -4/-6, links without such addresses are left out.
        if with_addrs && family != Family::Any && own.is_empty() {
            continue;
        }
        t.push_str(&format_link(link));
        for a in own {
            t.push_str(&format_addr(a, &link.name));
        }
    }
    Ok(t)
}

fn format_link(link: &Link) -> String {
    let mut t = format!(
        "{}: {}: {} mtu {}",
        link.index,
        link.name,
        iface::ip_flag_names(link.flags),
        link.mtu
    );
    if let Some(q) = &link.qdisc {
        t.push_str(&format!(" qdisc {q}"));
    }
    t.push_str(&format!(" state {}", link.oper));
    if let Some(n) = link.txqlen {
        t.push_str(&format!(" qlen {n}"));
    }
    t.push('\n');
    let kind = match link.link_type {
        iface::ARPHRD_ETHER => "ether".to_string(),
        iface::ARPHRD_LOOPBACK => "loopback".to_string(),
        iface::ARPHRD_NONE => "none".to_string(),
        n => format!("[{n}]"),
    };
    t.push_str(&format!("    link/{kind}"));
    if let Some(mac) = &link.mac {
        t.push_str(&format!(" {}", iface::format_mac(mac)));
    }
    if let Some(brd) = &link.broadcast {
        t.push_str(&format!(" brd {}", iface::format_mac(brd)));
    }
    t.push('\n');
    t
}

fn format_addr(a: &Addr, link_name: &str) -> String {
    let mut t = match a.addr {
        IpAddr::V4(v4) => format!("    inet {v4}/{}", a.prefix),
        IpAddr::V6(v6) => format!("    inet6 {v6}/{}", a.prefix),
    };
    if let Some(b) = a.broadcast {
        t.push_str(&format!(" brd {b}"));
    }
    t.push_str(&format!(" scope {}", iface::scope_name(a.scope)));
    for (bit, name) in [
        (iface::IFA_F_SECONDARY, "secondary"),
        (iface::IFA_F_TENTATIVE, "tentative"),
        (iface::IFA_F_DEPRECATED, "deprecated"),
        (iface::IFA_F_DADFAILED, "dadfailed"),
        (iface::IFA_F_NODAD, "nodad"),
    ] {
        if a.flags & bit != 0 {
            t.push(' ');
            t.push_str(name);
        }
    }
    if a.addr.is_ipv4() {
        t.push(' ');
        t.push_str(a.label.as_deref().unwrap_or(link_name));
    }
    t.push('\n');
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
                IfAction::Link(LinkChange::Mac([2, 0, 0, 0, 0, 0xaa])),
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

    #[test]
    fn ip_route_forms() {
        assert!(parse_ip(&words("-4 -6 route")).is_err());
        assert!(parse_ip(&words("-6 -6 route")).is_ok());
        let cmd = parse_ip(&words("route add 10.1.0.0/16 via 10.0.0.254 dev eth0")).unwrap();
        assert_eq!(
            cmd,
            IpCmd::RouteAdd {
                route: RouteArgs {
                    v6: false,
                    dst: Some(("10.1.0.0".parse().unwrap(), 16)),
                    gateway: Some("10.0.0.254".parse().unwrap()),
                    dev: Some("eth0".into()),
                    ..RouteArgs::default()
                },
                replace: false
            }
        );
        let IpCmd::RouteAdd { route, .. } =
            parse_ip(&words("r a default via fe80::1 dev t0")).unwrap()
        else {
            panic!()
        };
        assert!(route.v6 && route.dst.is_none());
        let IpCmd::RouteDel(route) = parse_ip(&words("-6 route del 2001:db8:1::/48")).unwrap()
        else {
            panic!()
        };
        assert!(route.v6);
        assert_eq!(
            parse_ip(&words("-6 r")).unwrap(),
            IpCmd::RouteShow {
                v6: true,
                dev: None
            }
        );
        assert_eq!(
            parse_ip(&words("route show dev t0")).unwrap(),
            IpCmd::RouteShow {
                v6: false,
                dev: Some("t0".into())
            }
        );
        assert!(parse_ip(&words("route add 10.1.2.3/16 dev t0"))
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_ip(&words("route add 10.1.0.0/16")).is_err());
        assert!(parse_ip(&words("route add 10.1.0.0/16 via fe80::1")).is_err());
        assert!(parse_ip(&words("-4 route add 2001:db8::/64 dev t0")).is_err());
        assert!(parse_ip(&words("route add 10.1.0.0/16 dev t0 bogus")).is_err());
    }

    #[test]
    fn ip_addr_link_neigh_forms() {
        assert_eq!(
            parse_ip(&words("a")).unwrap(),
            IpCmd::AddrShow {
                family: Family::Any,
                dev: None
            }
        );
        assert_eq!(
            parse_ip(&words("addr show dev t0")).unwrap(),
            IpCmd::AddrShow {
                family: Family::Any,
                dev: Some("t0".into())
            }
        );
        assert_eq!(
            parse_ip(&words("addr add 10.0.0.1 dev t0")).unwrap(),
            IpCmd::AddrAdd {
                addr: "10.0.0.1".parse().unwrap(),
                prefix: 32,
                dev: "t0".into()
            }
        );
        assert_eq!(
            parse_ip(&words("addr del 10.0.0.1 dev t0")).unwrap(),
            IpCmd::AddrDel {
                addr: "10.0.0.1".parse().unwrap(),
                prefix: None,
                dev: "t0".into()
            }
        );
        assert!(parse_ip(&words("addr add 10.0.0.1/24")).is_err());
        assert_eq!(
            parse_ip(&words(
                "link set dev t0 up mtu 1400 promisc on address 02:00:00:00:00:01"
            ))
            .unwrap(),
            IpCmd::LinkSet {
                dev: "t0".into(),
                changes: vec![
                    LinkChange::Up,
                    LinkChange::Mtu(1400),
                    LinkChange::Promisc(true),
                    LinkChange::Mac([2, 0, 0, 0, 0, 1])
                ]
            }
        );
        assert_eq!(
            parse_ip(&words("l set t0 down")).unwrap(),
            IpCmd::LinkSet {
                dev: "t0".into(),
                changes: vec![LinkChange::Down]
            }
        );
        assert!(parse_ip(&words("link set t0")).is_err());
        assert!(parse_ip(&words("link set t0 promisc maybe")).is_err());
        assert_eq!(
            parse_ip(&words("neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev t0")).unwrap(),
            IpCmd::NeighAdd {
                dst: "10.0.0.2".parse().unwrap(),
                lladdr: [2, 0, 0, 0, 0, 2],
                dev: "t0".into(),
                state: iface::NUD_PERMANENT,
                replace: false
            }
        );
        assert_eq!(
            parse_ip(&words("n flush dev t0")).unwrap(),
            IpCmd::NeighFlush {
                family: Family::Any,
                dev: "t0".into()
            }
        );
        assert!(parse_ip(&words("neigh flush")).is_err());
        assert!(parse_ip(&words("neigh add 10.0.0.2 dev t0")).is_err());
        assert!(parse_ip(&words("bogus")).is_err());
        assert!(parse_ip(&words("-x route")).is_err());
    }
}
