//! iproute2's text for routes, neighbours, links and addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::net::iface::{self, Addr, Link, Neigh, Route};
use crate::packet::mac::hw_addr_lower;

pub fn format_route(r: &Route, names: &HashMap<u32, String>) -> String {
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
    if r.onlink {
        t.push_str(" onlink");
    }
    if let Some(mtu) = r.mtu {
        t.push_str(&format!(" mtu {mtu}"));
    }
    if let Some(mss) = r.advmss {
        t.push_str(&format!(" advmss {mss}"));
    }
    t.push('\n');
    t
}

pub fn format_neigh(n: &Neigh, names: &HashMap<u32, String>) -> String {
    let name = names
        .get(&n.index)
        .cloned()
        .unwrap_or_else(|| format!("if{}", n.index));
    let mut t = format!("{} dev {name}", n.dst);
    if let Some(ll) = &n.lladdr {
        t.push_str(&format!(" lladdr {}", hw_addr_lower(ll)));
    }
    if n.router {
        t.push_str(" router");
    }
    t.push_str(&format!(" {}\n", iface::nud_names(n.state)));
    t
}

/// A link's lines of `ip link show` (and the head of `ip addr show`).
pub fn format_link(link: &Link) -> String {
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
        t.push_str(&format!(" {}", hw_addr_lower(mac)));
    }
    if let Some(brd) = &link.broadcast {
        t.push_str(&format!(" brd {}", hw_addr_lower(brd)));
    }
    t.push('\n');
    t
}

pub fn format_addr(a: &Addr, link_name: &str) -> String {
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
