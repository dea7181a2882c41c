//! rtnetlink requests: dumps turned into the plain data of `iface`, and
//! the changes `ifconfig` and `ip` make. One connection per command; its
//! task runs on the runtime and ends when the `Netlink` is dropped.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage, State};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec};

use super::iface::{Addr, Counters, Link, Neigh, Route, RT_TABLE_MAIN};
use crate::packet::MacAddr;

/// A failed netlink request, shown as the kernel's errno text
/// ("File exists", "No such process").
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("{}", .0.desc())]
    Kernel(nix::errno::Errno),
    #[error("netlink: {0}")]
    Other(String),
    #[error("netlink socket: {}", crate::util::io_error(.0))]
    Socket(std::io::Error),
}

impl NlError {
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            NlError::Kernel(e) => Some(*e),
            NlError::Other(_) | NlError::Socket(_) => None,
        }
    }
}

impl From<rtnetlink::Error> for NlError {
    fn from(e: rtnetlink::Error) -> Self {
        match e {
            rtnetlink::Error::NetlinkError(m) => {
                NlError::Kernel(nix::errno::Errno::from_raw(m.raw_code().abs()))
            }
            other => NlError::Other(other.to_string()),
        }
    }
}

pub type NlResult<T> = Result<T, NlError>;

/// One change to a link; several can go into one RTM_SETLINK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    Up,
    Down,
    Promisc(bool),
    Mtu(u32),
    Mac(MacAddr),
    /// Move the link into the network namespace of this open fd.
    NetnsFd(std::os::fd::RawFd),
}

/// What `ip route add/del` and ifconfig-free route changes need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub v6: bool,
    /// None: the default route.
    pub dst: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub metric: Option<u32>,
    pub src: Option<IpAddr>,
    /// Route metrics (RTA_METRICS): the path MTU, the advertised MSS.
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// The gateway is on the link whatever the link's prefixes say
    /// (RTNH_F_ONLINK): a tunnel's far end, a /32 address's router.
    pub onlink: bool,
}

pub struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens a connection; must be called on the runtime (inside block_on).
    pub fn open() -> NlResult<Self> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NlError::Socket)?;
        let task = tokio::spawn(connection);
        Ok(Netlink { handle, task })
    }

    pub async fn links(&self) -> NlResult<Vec<Link>> {
        let mut stream = self.handle.link().get().execute();
        let mut links = Vec::new();
        while let Some(msg) = stream.try_next().await? {
            links.push(link_from(msg));
        }
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    pub async fn link(&self, index: u32) -> NlResult<Link> {
        let mut stream = self.handle.link().get().match_index(index).execute();
        match stream.try_next().await? {
            Some(msg) => Ok(link_from(msg)),
            None => Err(NlError::Kernel(nix::errno::Errno::ENODEV)),
        }
    }

    pub async fn set_link(&self, index: u32, changes: &[LinkChange]) -> NlResult<()> {
        let mut builder = LinkUnspec::new_with_index(index);
        for change in changes {
            builder = match change {
                LinkChange::Up => builder.up(),
                LinkChange::Down => builder.down(),
                LinkChange::Promisc(on) => builder.promiscuous(*on),
                LinkChange::Mtu(mtu) => builder.mtu(*mtu),
                LinkChange::Mac(mac) => builder.address(mac.octets().to_vec()),
                LinkChange::NetnsFd(fd) => builder.setns_by_fd(*fd),
            };
        }
        self.handle.link().set(builder.build()).execute().await?;
        Ok(())
    }

    /// All addresses, or those of one interface.
    pub async fn addrs(&self, index: Option<u32>) -> NlResult<Vec<Addr>> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let mut stream = request.execute();
        let mut addrs = Vec::new();
        while let Some(msg) = stream.try_next().await? {
            if let Some(addr) = addr_from(msg) {
                addrs.push(addr);
            }
        }
        Ok(addrs)
    }

    pub async fn add_addr(&self, index: u32, addr: IpAddr, prefix: u8) -> NlResult<()> {
        self.handle
            .address()
            .add(index, addr, prefix)
            .execute()
            .await?;
        Ok(())
    }

    pub async fn del_addr(&self, addr: &Addr) -> NlResult<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr.is_ipv6());
        msg.header.prefix_len = addr.prefix;
        msg.header.index = addr.index;
        msg.attributes.push(AddressAttribute::Local(addr.addr));
        if addr.addr.is_ipv4() {
            msg.attributes.push(AddressAttribute::Address(addr.addr));
        }
        self.handle.address().del(msg).execute().await?;
        Ok(())
    }

    /// Routes of one family, every table.
    pub async fn routes(&self, v6: bool) -> NlResult<Vec<Route>> {
        let mut query = RouteMessage::default();
        query.header.address_family = family(v6);
        let mut stream = self.handle.route().get(query).execute();
        let mut routes = Vec::new();
        while let Some(msg) = stream.try_next().await? {
            routes.push(route_from(msg));
        }
        Ok(routes)
    }

    /// Adds a route; `replace` overwrites one with the same destination.
    pub async fn add_route(&self, spec: &RouteSpec, replace: bool) -> NlResult<()> {
        let mut msg = route_message(spec);
        // iproute2's defaults for `ip route add`: proto boot, and link scope
        // for an IPv4 route without a gateway (the destination is on-link).
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if spec.gateway.is_none() && !spec.v6 {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        let mut request = self.handle.route().add(msg);
        if replace {
            request = request.replace();
        }
        request.execute().await?;
        Ok(())
    }

    pub async fn del_route(&self, spec: &RouteSpec) -> NlResult<()> {
        let mut msg = route_message(spec);
        // Unspecified protocol and scope "nowhere" match any route with the
        // given destination, gateway and device (what iproute2 sends).
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        self.handle.route().del(msg).execute().await?;
        Ok(())
    }

    /// IPv4 and IPv6 neighbours (not the bridge FDB).
    pub async fn neighs(&self) -> NlResult<Vec<Neigh>> {
        let mut stream = self.handle.neighbours().get().execute();
        let mut neighs = Vec::new();
        while let Some(msg) = stream.try_next().await? {
            if let Some(n) = neigh_from(msg) {
                neighs.push(n);
            }
        }
        Ok(neighs)
    }

    pub async fn add_neigh(
        &self,
        index: u32,
        dst: IpAddr,
        lladdr: &MacAddr,
        state: u16,
        replace: bool,
    ) -> NlResult<()> {
        let mut request = self
            .handle
            .neighbours()
            .add(index, dst)
            .link_local_address(&lladdr.octets())
            .state(NeighbourState::from(state));
        if replace {
            request = request.replace();
        }
        request.execute().await?;
        Ok(())
    }

    pub async fn del_neigh(&self, index: u32, dst: IpAddr) -> NlResult<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(dst.is_ipv6());
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(match dst {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.handle.neighbours().del(msg).execute().await?;
        Ok(())
    }
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn route_address(addr: IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn route_message(spec: &RouteSpec) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(spec.v6);
    msg.header.table = RT_TABLE_MAIN as u8;
    msg.header.kind = RouteType::Unicast;
    if spec.onlink {
        msg.header.flags |= RouteFlags::Onlink;
    }
    if let Some((dst, prefix)) = spec.dst {
        msg.header.destination_prefix_length = prefix;
        msg.attributes
            .push(RouteAttribute::Destination(route_address(dst)));
    }
    if let Some(gw) = spec.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(route_address(gw)));
    }
    if let Some(oif) = spec.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = spec.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    if let Some(src) = spec.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(route_address(src)));
    }
    let metrics: Vec<RouteMetric> = [
        spec.mtu.map(RouteMetric::Mtu),
        spec.advmss.map(RouteMetric::Advmss),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    msg
}

fn oper_name(state: &State) -> String {
    match state {
        State::Up => "UP",
        State::Down => "DOWN",
        State::LowerLayerDown => "LOWERLAYERDOWN",
        State::Dormant => "DORMANT",
        State::Testing => "TESTING",
        State::NotPresent => "NOTPRESENT",
        _ => "UNKNOWN",
    }
    .to_string()
}

fn link_from(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        flags: msg.header.flags.bits(),
        link_type: u16::from(msg.header.link_layer_type),
        oper: "UNKNOWN".into(),
        ..Link::default()
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(mac) => link.mac = Some(mac),
            LinkAttribute::Broadcast(brd) => link.broadcast = Some(brd),
            LinkAttribute::OperState(state) => link.oper = oper_name(&state),
            LinkAttribute::Qdisc(q) => link.qdisc = Some(q),
            LinkAttribute::TxQueueLen(n) => link.txqlen = Some(n),
            LinkAttribute::Stats64(s) => {
                link.stats = Counters {
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                    rx_errors: s.rx_errors,
                    rx_dropped: s.rx_dropped,
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                    tx_errors: s.tx_errors,
                    tx_dropped: s.tx_dropped,
                }
            }
            _ => {}
        }
    }
    link
}

fn addr_from(msg: AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    let mut addr = Addr {
        index: msg.header.index,
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        prefix: msg.header.prefix_len,
        broadcast: None,
        scope: u8::from(msg.header.scope),
        flags: u32::from(msg.header.flags.bits()),
        label: None,
    };
    for attr in msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(a),
            AddressAttribute::Address(a) => address = Some(a),
            AddressAttribute::Broadcast(b) => addr.broadcast = Some(b),
            AddressAttribute::Label(l) => addr.label = Some(l),
            AddressAttribute::Flags(f) => addr.flags = f.bits(),
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links (and the only one for IPv6).
    addr.addr = local.or(address)?;
    Some(addr)
}

fn route_from(msg: RouteMessage) -> Route {
    let mut route = Route {
        v6: msg.header.address_family == AddressFamily::Inet6,
        dst: None,
        prefix: msg.header.destination_prefix_length,
        gateway: None,
        oif: None,
        table: u32::from(msg.header.table),
        protocol: u8::from(msg.header.protocol),
        scope: u8::from(msg.header.scope),
        kind: u8::from(msg.header.kind),
        prefsrc: None,
        metric: None,
        mtu: None,
        advmss: None,
        onlink: msg.header.flags.contains(RouteFlags::Onlink),
    };
    let ip = |a: RouteAddress| match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(a)),
        _ => None,
    };
    for attr in msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => route.dst = ip(a),
            RouteAttribute::Gateway(a) => route.gateway = ip(a),
            RouteAttribute::PrefSource(a) => route.prefsrc = ip(a),
            RouteAttribute::Oif(i) => route.oif = Some(i),
            RouteAttribute::Table(t) => route.table = t,
            RouteAttribute::Priority(p) => route.metric = Some(p),
            RouteAttribute::Metrics(metrics) => {
                for m in metrics {
                    match m {
                        RouteMetric::Mtu(mtu) => route.mtu = Some(mtu),
                        RouteMetric::Advmss(mss) => route.advmss = Some(mss),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    route
}

fn neigh_from(msg: NeighbourMessage) -> Option<Neigh> {
    if !matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    let mut dst = None;
    let mut lladdr = None;
    for attr in msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => dst = Some(IpAddr::V4(a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                dst = Some(IpAddr::V6(a))
            }
            NeighbourAttribute::LinkLocalAddress(l) => lladdr = Some(l),
            _ => {}
        }
    }
    Some(Neigh {
        index: msg.header.ifindex,
        dst: dst?,
        lladdr,
        state: u16::from(msg.header.state),
        router: msg.header.flags.contains(NeighbourFlags::Router),
    })
}
