//! `tap`: creates TAP devices through /dev/net/tun (net/tap.rs) and keeps
//! them in the TAP registry, removes them, lists them.

use std::io::Write;

use anyhow::anyhow;

use super::{usage, CommandSpec};
use crate::net::iface;
use crate::net::netlink::Netlink;
use crate::net::tap;
use crate::packet::mac::hw_addr_lower;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
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
}];

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
                l.mac.as_deref().map(hw_addr_lower).unwrap_or_default()
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
