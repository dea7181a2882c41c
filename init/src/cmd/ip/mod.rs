//! `ip`: routes, addresses, links and neighbours, iproute2 style, over
//! rtnetlink (net/netlink.rs). The whole line is parsed and checked first,
//! so a bad word changes nothing.

use std::collections::HashMap;
use std::io::Write;

use anyhow::anyhow;

mod parse;
mod show;

use parse::{parse_ip, Family, IpCmd, RouteArgs};
use show::{format_addr, format_link, format_neigh, format_route};

use super::{usage, CommandSpec};
use crate::net::iface::{self, ifindex, Addr};
use crate::net::netlink::{LinkChange, Netlink, NlError, RouteSpec};
use crate::net::netns;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ip",
        usage: "ip [-4|-6] route [show] [dev IF]\n\
                ip [-4|-6] route add|replace|del DST|default [via GW] [dev IF] [onlink] [metric N] [src ADDR] [mtu N] [advmss N]\n\
                ip [-4|-6] addr [show] [[dev] IF]\n\
                ip addr add|del ADDR[/LEN] dev IF\n\
                ip link [show] [[dev] IF]\n\
                ip link set [dev] IF [up|down] [mtu N] [address MAC] [promisc on|off]... | netns NAME\n\
                ip [-4|-6] neigh [show] [dev IF]\n\
                ip neigh add|replace IP lladdr MAC dev IF [nud STATE]\n\
                ip neigh del IP dev IF\n\
                ip [-4|-6] neigh flush dev IF\n\
                ip netns [list] | add NAME | del NAME | exec NAME COMMAND...",
        summary: "show and change routes, addresses, links and neighbours (iproute2 style)",
        help: "Objects and verbs may be abbreviated as in iproute2: ip r, ip a, ip l,\n\
               ip n, ip r d. The family comes from -4/-6 or from the addresses given.\n\
               Prefix lengths are decimal; ADDR without /LEN in `addr add` is a host\n\
               address (/32, /128). `route show` lists the main table.\n\
               `neigh flush dev IF` removes every entry of IF, permanent ones too\n\
               (iproute2 keeps permanent entries unless given `nud all`).\n\
               Named network namespaces are iproute2's (/run/netns/NAME); `ip netns exec\n\
               NAME COMMAND...` runs the command line (a built-in or a program) in a child\n\
               myinit inside the namespace; the status is its status.",
        run: ip,
        cli: None,
    },
];

fn ip(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let cmd = parse_ip(args).map_err(usage)?;
    if let IpCmd::NetnsExec { netns, command } = &cmd {
        return netns_exec(ctx, netns, command);
    }
    let text = ctx.block_on(run_ip(cmd))??;
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn opt_index(dev: &Option<String>) -> anyhow::Result<Option<u32>> {
    Ok(dev.as_deref().map(ifindex).transpose()?)
}

/// A word quoted for myinit's own language: single quotes, a quote
/// inside written as '\''.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Runs `command` in a child myinit that entered the namespace first:
/// built-ins and programs alike, their output where ours goes.
fn netns_exec(ctx: &mut Ctx<'_>, netns: &str, command: &[String]) -> anyhow::Result<i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = netns::open(netns)?;
    let line: Vec<String> = command.iter().map(|w| quoted(w)).collect();
    let mut child = std::process::Command::new("/proc/self/exe");
    child
        .args(["-c", &line.join(" ")])
        .stdin(ctx.input.child_stdio()?)
        .stdout(ctx.out.child_stdio()?);
    let fd = ns.as_raw_fd();
    // SAFETY: only setns(2), async-signal-safe, between fork and exec.
    unsafe {
        child.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let state = ctx.state();
    let pid = state
        .reaper
        .spawn(&mut child)
        .map_err(|e| anyhow!("netns exec {netns}: {}", crate::util::io_error(&e)))?;
    drop(ns);
    let interrupts = ctx.interrupts();
    Ok(state
        .rt
        .block_on(state.reaper.wait_interruptible(pid, interrupts)))
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
        IpCmd::LinkSetNetns { dev, netns: name } => {
            let index = ifindex(&dev)?;
            let ns = netns::open(&name)?;
            let nl = Netlink::open()?;
            nl.set_link(
                index,
                &[LinkChange::NetnsFd(std::os::fd::AsRawFd::as_raw_fd(&ns))],
            )
            .await
            .map_err(|e| anyhow!("{dev}: netns {name}: {e}"))?;
        }
        IpCmd::NetnsList => {
            for name in netns::list() {
                out.push_str(&format!("{name}\n"));
            }
        }
        IpCmd::NetnsAdd(name) => netns::add(&name)?,
        IpCmd::NetnsDel(name) => netns::delete(&name)?,
        IpCmd::NetnsExec { .. } => unreachable!("run by netns_exec"),
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
