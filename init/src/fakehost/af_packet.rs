//! The packet backend: a userspace task that reads the frames the kernel
//! sends on the interface and writes the answers back into its receive
//! path, built with the packet model (`packet/layers.rs`). On a TAP made by
//! `tap add` it reads and writes the TAP's own fd (from the TAP registry);
//! on a veth it reads outgoing frames from an AF_PACKET socket and sends
//! the answers on the veth's peer, which delivers them to its ingress.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail};
use myinit_common::fakehost::{ANSWER_ARP, ANSWER_DAD, ANSWER_ECHO, ANSWER_NA, ANSWER_RA};
use tokio::io::unix::AsyncFd;

use super::{Answer, Counts, FakeHost, HostSet, LogLimiter, SharedHosts};
use crate::jobs::{Drained, EventSource};
use crate::net::packet_socket::PacketSender;
use crate::packet::layers::{
    decode, Arp, Dialect, Ether, Field, Icmp, Icmpv6, Ip, Ipv6, Layer, NdpOption,
    NeighborAdvertisement, Packet, RouterAdvertisement, LINKTYPE_ETHERNET,
};
use crate::packet::MacAddr;
use crate::state::State;

/// Frames read per turn before other tasks get theirs.
const BATCH: usize = 256;
/// `sll_pkttype` of a frame this host sent (linux/if_packet.h).
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
const ALL_NODES_MAC: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 1]);

/// Frames for the job to hand to the kernel at its next turn (a leaving
/// router's last RA): only the job holds the link.
type Outbox = Arc<Mutex<Vec<Vec<u8>>>>;

/// The packet backend's host list, shared with the job.
struct PacketHosts(SharedHosts, Outbox);

fn lock(hosts: &SharedHosts) -> std::sync::MutexGuard<'_, BTreeMap<IpAddr, (FakeHost, Counts)>> {
    hosts.lock().unwrap_or_else(|e| e.into_inner())
}

impl HostSet for PacketHosts {
    fn insert(&mut self, host: &FakeHost) -> anyhow::Result<()> {
        lock(&self.0).insert(host.ip, (host.clone(), Counts::default()));
        Ok(())
    }

    fn remove(&mut self, host: &FakeHost) -> anyhow::Result<()> {
        lock(&self.0).remove(&host.ip);
        if host.advertises() {
            if let Some(frame) = leaving_router_frame(host) {
                self.1.lock().unwrap_or_else(|e| e.into_inner()).push(frame);
            }
        }
        Ok(())
    }

    fn counts(&self, host: &FakeHost) -> Counts {
        lock(&self.0)
            .get(&host.ip)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }
}

/// Where frames come from and answers go.
enum Link {
    /// A TAP's fd: reads what the kernel sends, writes what it receives.
    Tap(AsyncFd<OwnedFd>),
    /// An AF_PACKET socket on a veth (outgoing frames) and its peer's index.
    Veth {
        socket: AsyncFd<OwnedFd>,
        sender: PacketSender,
        peer: u32,
    },
}

impl Link {
    fn fd(&mut self) -> &mut AsyncFd<OwnedFd> {
        match self {
            Link::Tap(fd) => fd,
            Link::Veth { socket, .. } => socket,
        }
    }

    /// One frame the kernel sent on the interface, or None when none is queued.
    fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            match self {
                Link::Tap(fd) => {
                    // SAFETY: reading into a buffer of its own length.
                    let n =
                        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    return (n > 0).then_some(n as usize);
                }
                Link::Veth { socket, .. } => {
                    // SAFETY: zeroed sockaddr_ll is a valid value.
                    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                    // SAFETY: buffer and address of their own lengths.
                    let n = unsafe {
                        libc::recvfrom(
                            socket.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            0,
                            (&mut from as *mut libc::sockaddr_ll).cast(),
                            &mut len,
                        )
                    };
                    if n <= 0 {
                        return None;
                    }
                    // Frames arriving from the peer are not requests to us.
                    if from.sll_pkttype == PACKET_OUTGOING {
                        return Some(n as usize);
                    }
                }
            }
        }
    }

    fn send(&self, frame: &[u8]) {
        match self {
            Link::Tap(fd) => {
                // SAFETY: writing a buffer of its own length.
                unsafe { libc::write(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            }
            Link::Veth { sender, peer, .. } => {
                let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
                let _ = sender.send(*peer, ethertype, frame);
            }
        }
    }
}

/// The veth peer of `iface` when it is in this namespace: the link the
/// kernel names in IFLA_LINK with no IFLA_LINK_NETNSID (which would mean
/// another namespace), itself linked back to `iface`. Asked over netlink:
/// /sys may show another namespace (`nsenter --net` keeps the mount).
async fn veth_peer(ifindex: u32) -> Option<u32> {
    use futures::TryStreamExt as _;
    use rtnetlink::packet_route::link::LinkAttribute;
    let (connection, handle, _) = rtnetlink::new_connection().ok()?;
    let task = tokio::spawn(connection);
    let linked = |msg: &rtnetlink::packet_route::link::LinkMessage| {
        let other_ns = msg
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)));
        let link = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        });
        link.filter(|_| !other_ns)
    };
    let result = async {
        let mut own = handle.link().get().match_index(ifindex).execute();
        let peer = linked(&own.try_next().await.ok()??)?;
        let mut back = handle.link().get().match_index(peer).execute();
        (linked(&back.try_next().await.ok()??)? == ifindex).then_some(peer)
    }
    .await;
    task.abort();
    result
}

fn packet_socket(ifindex: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ALL.to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: an AF_PACKET address of its own length.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn val<T: Copy>(f: &Field<T>) -> Option<T> {
    match f {
        Field::Value(v) => Some(*v),
        _ => None,
    }
}

fn v<T>(x: T) -> Field<T> {
    Field::Value(x)
}

/// The host answering for `target`: by its address, or (for NDP) a
/// router's link-local alias.
fn find(hosts: &BTreeMap<IpAddr, (FakeHost, Counts)>, target: IpAddr, ndp: bool) -> Option<IpAddr> {
    if hosts.contains_key(&target) {
        return Some(target);
    }
    ndp.then(|| {
        hosts
            .values()
            .find(|(h, _)| h.alias().map(IpAddr::V6) == Some(target))
            .map(|(h, _)| h.ip)
    })
    .flatten()
}

fn ipv6_reply(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6 {
    Ipv6 {
        version_class: v(0x6000_0000),
        payload_length: Field::Auto,
        next_header: Field::Auto,
        hop_limit: v(255),
        src: v(src),
        dst: v(dst),
    }
}

/// The TTL / hop limit of echo replies (Linux's default).
const REPLY_TTL: u8 = 64;

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A Router Advertisement from `host` (a router) to `eth_dst`/`ip_dst`;
/// `leaving`: the one a router sends as it stops (router lifetime 0, the
/// prefix no longer preferred, RFC 4861 §6.2.5), so hosts drop the
/// default route through it at once.
fn router_advertisement(
    host: &FakeHost,
    eth_dst: MacAddr,
    ip_dst: Ipv6Addr,
    leaving: bool,
) -> Option<Vec<Layer>> {
    let source = host.router_source()?;
    let mut options = vec![NdpOption::SourceLinkLayerAddress(host.mac)];
    if let Some((prefix, prefix_length)) = host.prefix {
        let (valid_lifetime, preferred_lifetime) = if leaving { (0, 0) } else { (86400, 14400) };
        options.push(NdpOption::PrefixInformation {
            prefix_length,
            // L (on-link) and A (autonomous address configuration).
            flags: 0xc0,
            valid_lifetime,
            preferred_lifetime,
            prefix,
        });
    }
    Some(vec![
        Layer::Ether(Ether {
            dst: v(eth_dst),
            src: v(host.mac),
            etype: v(0x86dd),
        }),
        Layer::Ipv6(ipv6_reply(source, ip_dst)),
        Layer::Icmpv6(Icmpv6 {
            type_: Field::Auto,
            code: v(0),
            checksum: Field::Auto,
        }),
        Layer::RouterAdvertisement(RouterAdvertisement {
            cur_hop_limit: v(64),
            flags: v(0),
            router_lifetime: v(if leaving { 0 } else { 1800 }),
            reachable_time: v(0),
            retrans_timer: v(0),
            options,
        }),
    ])
}

/// The frame of a router's last advertisement (see `router_advertisement`),
/// to all nodes.
pub fn leaving_router_frame(host: &FakeHost) -> Option<Vec<u8>> {
    let layers = router_advertisement(host, ALL_NODES_MAC, ALL_NODES, true)?;
    Packet { layers }.encode().ok()
}

/// The answers to one frame the kernel sent: one if it asks a fake host,
/// one per router for a Router Solicitation, none otherwise.
pub fn answers(
    hosts: &mut BTreeMap<IpAddr, (FakeHost, Counts)>,
    frame: &[u8],
) -> Vec<(Vec<u8>, Answer)> {
    let replies = replies(hosts, frame).unwrap_or_default();
    replies
        .into_iter()
        .filter_map(|(reply, kind, key, target, asker)| {
            let bytes = Packet { layers: reply }.encode().ok()?;
            let (host, counts) = hosts.get_mut(&key)?;
            counts[kind as usize] += 1;
            Some((
                bytes,
                Answer {
                    kind,
                    target,
                    asker,
                    mac: host.mac,
                },
            ))
        })
        .collect()
}

/// An answer's layers, its kind, the host's key, the address answered
/// for and the asker's.
type Reply = (Vec<Layer>, u8, IpAddr, IpAddr, IpAddr);

fn replies(hosts: &BTreeMap<IpAddr, (FakeHost, Counts)>, frame: &[u8]) -> Option<Vec<Reply>> {
    // As deep as the model goes: the answer reads the real protocol.
    let packet = decode(Dialect::Full, LINKTYPE_ETHERNET, frame);
    let layers = packet.layers.as_slice();
    let Some(Layer::Ether(eth)) = layers.first() else {
        return None;
    };
    let asker_mac = val(&eth.src)?;
    let reply = match &layers[1..] {
        [Layer::Arp(a), ..] if val(&a.op) == Some(1) => {
            let target = IpAddr::V4(val(&a.pdst)?);
            let key = find(hosts, target, false)?;
            let mac = hosts[&key].0.mac;
            let reply = vec![
                Layer::Ether(Ether {
                    dst: v(asker_mac),
                    src: v(mac),
                    etype: v(0x0806),
                }),
                Layer::Arp(Arp {
                    hwtype: v(1),
                    ptype: v(0x0800),
                    hwlen: v(6),
                    plen: v(4),
                    op: v(2),
                    hwsrc: v(mac),
                    psrc: a.pdst,
                    hwdst: a.hwsrc,
                    pdst: a.psrc,
                }),
            ];
            (reply, ANSWER_ARP, key, target, IpAddr::V4(val(&a.psrc)?))
        }
        [Layer::Ip(ip), Layer::Icmp(_), Layer::Echo(echo), rest @ ..] => {
            let target = IpAddr::V4(val(&ip.dst)?);
            let key = find(hosts, target, false)?;
            let host = &hosts[&key].0;
            // Only whole datagrams, as the eBPF backend: a first fragment
            // would get a reply of that fragment alone.
            if !host.icmp || val(&ip.flags.0.more_fragments).is_some_and(|f| f.0) {
                return None;
            }
            // A host's own TTL, not the request's.
            let reply_ip = Ip {
                src: ip.dst,
                dst: ip.src,
                ttl: v(REPLY_TTL),
                chksum: Field::Auto,
                ..ip.clone()
            };
            let mut reply = vec![
                Layer::Ether(Ether {
                    dst: v(asker_mac),
                    src: v(host.mac),
                    etype: v(0x0800),
                }),
                Layer::Ip(reply_ip),
                Layer::Icmp(Icmp {
                    typ: Field::Auto,
                    code: v(0),
                    chksum: Field::Auto,
                }),
                Layer::EchoReply(echo.clone()),
            ];
            reply.extend(rest.iter().cloned());
            (reply, ANSWER_ECHO, key, target, IpAddr::V4(val(&ip.src)?))
        }
        [Layer::Ipv6(ip), Layer::Icmpv6(_), next, rest @ ..] => {
            let src = val(&ip.src)?;
            let dst = val(&ip.dst)?;
            match next {
                Layer::Icmpv6EchoRequest(echo) => {
                    let target = IpAddr::V6(dst);
                    let key = find(hosts, target, false)?;
                    let host = &hosts[&key].0;
                    if !host.icmp {
                        return None;
                    }
                    let mut reply = vec![
                        Layer::Ether(Ether {
                            dst: v(asker_mac),
                            src: v(host.mac),
                            etype: v(0x86dd),
                        }),
                        Layer::Ipv6(Ipv6 {
                            src: v(dst),
                            dst: v(src),
                            hop_limit: v(REPLY_TTL),
                            ..ip.clone()
                        }),
                        Layer::Icmpv6(Icmpv6 {
                            type_: Field::Auto,
                            code: v(0),
                            checksum: Field::Auto,
                        }),
                        Layer::Icmpv6EchoReply(echo.clone()),
                    ];
                    reply.extend(rest.iter().cloned());
                    (reply, ANSWER_ECHO, key, target, IpAddr::V6(src))
                }
                Layer::NeighborSolicitation(ns) => {
                    if val(&ip.hop_limit) != Some(255) {
                        return None;
                    }
                    let target_v6 = val(&ns.target_address)?;
                    let target = IpAddr::V6(target_v6);
                    let key = find(hosts, target, true)?;
                    let host = &hosts[&key].0;
                    let dad = src.is_unspecified();
                    let (eth_dst, ip_dst) = if dad {
                        (ALL_NODES_MAC, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1))
                    } else {
                        (asker_mac, src)
                    };
                    // R, S, O in the top bits (RFC 4861 §4.4); S never to a multicast.
                    let mut flags = 0x2000_0000;
                    if !dad {
                        flags |= 0x4000_0000;
                    }
                    if host.router {
                        flags |= 0x8000_0000;
                    }
                    let reply = vec![
                        Layer::Ether(Ether {
                            dst: v(eth_dst),
                            src: v(host.mac),
                            etype: v(0x86dd),
                        }),
                        Layer::Ipv6(ipv6_reply(target_v6, ip_dst)),
                        Layer::Icmpv6(Icmpv6 {
                            type_: Field::Auto,
                            code: v(0),
                            checksum: Field::Auto,
                        }),
                        Layer::NeighborAdvertisement(NeighborAdvertisement {
                            flags: v(flags),
                            target_address: v(target_v6),
                            options: vec![NdpOption::TargetLinkLayerAddress(host.mac)],
                        }),
                    ];
                    (
                        reply,
                        if dad { ANSWER_DAD } else { ANSWER_NA },
                        key,
                        target,
                        IpAddr::V6(src),
                    )
                }
                Layer::RouterSolicitation(_) => {
                    if val(&ip.hop_limit) != Some(255) {
                        return None;
                    }
                    let (eth_dst, ip_dst) = if src.is_unspecified() {
                        (ALL_NODES_MAC, ALL_NODES)
                    } else {
                        (asker_mac, src)
                    };
                    // Every router answers, each from its own link-local.
                    let advertisements = hosts
                        .iter()
                        .filter(|(_, (h, _))| h.advertises())
                        .filter_map(|(key, (host, _))| {
                            let source = host.router_source()?;
                            let reply = router_advertisement(host, eth_dst, ip_dst, false)?;
                            Some((reply, ANSWER_RA, *key, IpAddr::V6(source), IpAddr::V6(src)))
                        })
                        .collect();
                    return Some(advertisements);
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(vec![reply])
}

struct PacketAnswerer {
    iface: String,
    link: Link,
    outbox: Outbox,
    hosts: SharedHosts,
    limiter: LogLimiter,
    answers: u64,
    buf: Vec<u8>,
}

impl EventSource for PacketAnswerer {
    async fn ready(&mut self) {
        if let Ok(Ok(mut guard)) =
            tokio::time::timeout(super::POLL, self.link.fd().readable_mut()).await
        {
            guard.clear_ready();
        }
    }

    fn drain(&mut self, max: usize) -> Drained {
        let mut taken = 0;
        let now = Instant::now();
        for frame in std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner())) {
            self.link.send(&frame);
        }
        while taken < max {
            let Some(n) = self.link.read(&mut self.buf) else {
                break;
            };
            taken += 1;
            for (frame, answer) in answers(&mut lock(&self.hosts), &self.buf[..n]) {
                self.link.send(&frame);
                self.answers += 1;
                super::print_lines(self.limiter.offer(|| answer.line(&self.iface), now));
            }
        }
        Drained { taken, done: false }
    }

    fn stop_new(&mut self) {}
}

/// Opens the interface's frames and starts the job; returns the host list
/// and the backend's name.
pub fn start(
    state: &State,
    iface: &str,
    ifindex: u32,
) -> anyhow::Result<(Box<dyn HostSet>, String)> {
    let _runtime = state.rt.enter();
    let tap = {
        let taps = state.taps.lock().unwrap_or_else(|e| e.into_inner());
        taps.get(iface)
            .map(|fd| fd.try_clone_to_owned())
            .transpose()?
    };
    let (link, name) = match tap {
        // SAFETY: the fd moves into the AsyncFd and stays open while registered.
        Some(fd) => (Link::Tap(unsafe { AsyncFd::register(fd) }?), "packet (tap)"),
        None => {
            let peer = state.rt.block_on(veth_peer(ifindex)).ok_or_else(|| {
                anyhow!(
                    "{iface}: the packet backend answers on TAPs made by `tap add` and on veths \
                     whose peer is in this namespace"
                )
            })?;
            let socket =
                packet_socket(ifindex).map_err(|e| anyhow!("{iface}: AF_PACKET socket: {e}"))?;
            let sender =
                PacketSender::open().map_err(|e| anyhow!("{iface}: AF_PACKET sender: {e}"))?;
            // SAFETY: the socket moves into the AsyncFd and stays open while registered.
            let socket = unsafe { AsyncFd::register(socket) }?;
            (
                Link::Veth {
                    socket,
                    sender,
                    peer,
                },
                "packet (veth)",
            )
        }
    };
    if iface.is_empty() {
        bail!("no interface");
    }
    let hosts: SharedHosts = Arc::new(Mutex::new(BTreeMap::new()));
    let outbox: Outbox = Arc::new(Mutex::new(Vec::new()));
    let answerer = PacketAnswerer {
        iface: iface.to_string(),
        link,
        hosts: hosts.clone(),
        outbox: outbox.clone(),
        limiter: LogLimiter::new(iface),
        answers: 0,
        buf: vec![0; 65536],
    };
    let target = iface.to_string();
    super::spawn_answerer(
        state,
        iface,
        name,
        BATCH,
        answerer,
        move |mut answerer, _| {
            // A router still here as the job ends (poweroff, the end of the
            // script) says it goes, as `del` has it say.
            let routers: Vec<FakeHost> = lock(&answerer.hosts)
                .values()
                .filter(|(h, _)| h.advertises())
                .map(|(h, _)| h.clone())
                .collect();
            for host in routers {
                if let Some(frame) = leaving_router_frame(&host) {
                    answerer.link.send(&frame);
                }
            }
            if let Some(line) = answerer.limiter.flush() {
                eprintln!("{line}");
            }
            let (answers, suppressed) = (answerer.answers, answerer.limiter.suppressed_total);
            drop(answerer);
            format!(
            "fakehost: {target}: stopped ({name}): {answers} answers, {suppressed} log lines suppressed"
        )
        },
    )?;
    Ok((Box::new(PacketHosts(hosts, outbox)), name.to_string()))
}
