//! `ip`'s words: iproute2's grammar, abbreviations included, into an
//! `IpCmd`; the whole line is checked before anything changes.

use std::net::IpAddr;

use crate::net::iface;
use crate::net::netlink::{LinkChange, RouteSpec};
use crate::packet::mac::MacAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    pub fn allows(self, addr: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteArgs {
    pub v6: bool,
    pub dst: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    pub metric: Option<u32>,
    pub src: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub onlink: bool,
}

impl RouteArgs {
    /// The netlink request for these words, with `dev` resolved to `oif`.
    pub fn spec(&self, oif: Option<u32>) -> RouteSpec {
        RouteSpec {
            v6: self.v6,
            dst: self.dst,
            gateway: self.gateway,
            oif,
            metric: self.metric,
            src: self.src,
            mtu: self.mtu,
            advmss: self.advmss,
            onlink: self.onlink,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpCmd {
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
        lladdr: MacAddr,
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
    LinkSetNetns {
        dev: String,
        netns: String,
    },
    NetnsList,
    NetnsAdd(String),
    NetnsDel(String),
    /// `ip netns exec NAME CMD…`: run (by the command) in a child.
    NetnsExec {
        netns: String,
        command: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Show,
    Add,
    Replace,
    Del,
    Flush,
    Set,
}

/// iproute2's abbreviation rule: a word matches a keyword it is a prefix of.
pub fn matches(word: &str, keyword: &str) -> bool {
    !word.is_empty() && keyword.starts_with(word)
}

pub fn parse_verb(word: &str) -> Option<Verb> {
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

pub fn parse_addr(word: &str) -> Result<IpAddr, String> {
    word.parse()
        .map_err(|_| format!("{word}: not an IP address"))
}

pub fn next_value<'a>(
    it: &mut impl Iterator<Item = &'a str>,
    key: &str,
) -> Result<&'a str, String> {
    it.next().ok_or_else(|| format!("{key} needs a value"))
}

pub fn parse_ip(args: &[String]) -> Result<IpCmd, String> {
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
        .ok_or("missing object (route, addr, link, neigh or netns)")?;
    let rest: Vec<&str> = words.collect();
    // `ip n` is neigh, as in iproute2: netns takes at least "netn".
    if object.starts_with("netn") && matches(object, "netns") {
        return parse_ip_netns(&rest);
    }
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
            "{object}: unknown object (route, addr, link, neigh or netns)"
        ))
    }
}

/// `[dev] IF` of the show forms.
pub fn parse_show_dev(rest: &[&str]) -> Result<Option<String>, String> {
    match rest {
        [] => Ok(None),
        ["dev", name] => Ok(Some(name.to_string())),
        [name] if *name != "dev" => Ok(Some(name.to_string())),
        _ => Err(format!("{}: unexpected arguments", rest.join(" "))),
    }
}

pub fn parse_ip_route(family: Family, verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
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
            "onlink" => route.onlink = true,
            "mtu" | "advmss" => {
                let mut n = next_value(&mut it, word)?;
                // iproute2's `mtu lock N`: the lock is not kept here.
                if n == "lock" {
                    n = next_value(&mut it, word)?;
                }
                let value = n
                    .parse::<u32>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("{word} {n}: expected a number above 0"))?;
                if word == "mtu" {
                    route.mtu = Some(value);
                } else {
                    route.advmss = Some(value);
                }
            }
            _ if dst_seen => return Err(format!("{word}: unknown word")),
            "to" => continue,
            "default" | "all" => dst_seen = true,
            _ => {
                let (addr, prefix) =
                    iface::parse_prefix(word, 32, 128).map_err(|e| e.to_string())?;
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

pub fn parse_ip_addr(family: Family, verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
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
            let (addr, prefix) = iface::parse_prefix(text, 32, 128).map_err(|e| e.to_string())?;
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

pub fn parse_ip_link(verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
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
                    "mtu" => LinkChange::Mtu(
                        iface::parse_mtu(next_value(&mut it, "mtu")?).map_err(|e| e.to_string())?,
                    ),
                    "address" => {
                        let mac = next_value(&mut it, "address")?;
                        LinkChange::Mac(mac.parse::<MacAddr>().map_err(|e| e.to_string())?)
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
                    // Alone: moving the interface is its own request.
                    "netns" if changes.is_empty() && it.clone().count() == 1 => {
                        let netns = next_value(&mut it, "netns")?.to_string();
                        let dev = dev.ok_or("missing IF")?;
                        return Ok(IpCmd::LinkSetNetns { dev, netns });
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

/// `ip netns [list] | add NAME | del NAME | exec NAME CMD…`.
pub fn parse_ip_netns(rest: &[&str]) -> Result<IpCmd, String> {
    match rest {
        [] => Ok(IpCmd::NetnsList),
        [verb] if matches(verb, "list") || matches(verb, "show") => Ok(IpCmd::NetnsList),
        [verb, name] if matches(verb, "add") => Ok(IpCmd::NetnsAdd(name.to_string())),
        [verb, name] if matches(verb, "delete") => Ok(IpCmd::NetnsDel(name.to_string())),
        [verb, name, command @ ..] if matches(verb, "exec") => {
            if command.is_empty() {
                return Err("netns exec NAME needs a command".into());
            }
            Ok(IpCmd::NetnsExec {
                netns: name.to_string(),
                command: command.iter().map(|w| w.to_string()).collect(),
            })
        }
        _ => Err("netns: expected list, add NAME, del NAME or exec NAME CMD…".into()),
    }
}

pub fn parse_ip_neigh(family: Family, verb: Verb, rest: &[&str]) -> Result<IpCmd, String> {
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
                lladdr = Some(mac.parse::<MacAddr>().map_err(|e| e.to_string())?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
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
                    LinkChange::Mac(MacAddr([2, 0, 0, 0, 0, 1]))
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
                lladdr: MacAddr([2, 0, 0, 0, 0, 2]),
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
        assert_eq!(parse_ip(&words("netns")).unwrap(), IpCmd::NetnsList);
        assert_eq!(
            parse_ip(&words("netns add peer")).unwrap(),
            IpCmd::NetnsAdd("peer".into())
        );
        assert_eq!(
            parse_ip(&words("netns exec peer ifconfig eth2 up")).unwrap(),
            IpCmd::NetnsExec {
                netns: "peer".into(),
                command: words("ifconfig eth2 up")
            }
        );
        assert!(parse_ip(&words("netns exec peer")).is_err());
        assert_eq!(
            parse_ip(&words("link set eth2 netns peer")).unwrap(),
            IpCmd::LinkSetNetns {
                dev: "eth2".into(),
                netns: "peer".into()
            }
        );
        assert!(parse_ip(&words("neigh add 10.0.0.2 dev t0")).is_err());
        assert!(parse_ip(&words("bogus")).is_err());
        assert!(parse_ip(&words("-x route")).is_err());
    }
}
