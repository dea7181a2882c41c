//! ICMP echo ("ping") over IPv4 and IPv6, printing what iputils prints.
//!
//! Raw ICMP sockets (root, which PID 1 is) are used first; an ICMP datagram
//! socket (`net.ipv4.ping_group_range`) is the fallback when raw sockets are
//! not permitted. Plain socket2 + etherparse rather than a ping crate: the
//! interface binding, IPv6 scopes, the TTL control messages and iputils'
//! exact output are most of the work anyway.
//!
//! A raw socket sees every ICMP message arriving on the host (other pings'
//! replies included), so replies are matched by identifier, sequence and
//! source address.

use std::collections::{HashMap, HashSet};
use std::io::{self, IoSliceMut, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use etherparse::{
    IcmpEchoHeader, Icmpv4Header, Icmpv4Slice, Icmpv4Type, Icmpv6Header, Icmpv6Slice, Icmpv6Type,
};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::Instant;

/// Which address family `-4`/`-6` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// What to ping and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub count: u32,
    pub interval: Duration,
    /// ICMP payload bytes (without the 8-byte ICMP header).
    pub size: usize,
    /// How long to wait for outstanding replies after the last request.
    pub timeout: Duration,
    /// `-I`: an interface name (SO_BINDTODEVICE) or a source address.
    pub iface: Option<String>,
    pub family: Option<Family>,
}

/// A resolved destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: IpAddr,
    /// IPv6 scope (interface index) for link-local addresses; 0 otherwise.
    pub scope_id: u32,
    /// The address as printed: `fe80::1%tap0` keeps its scope.
    pub shown: String,
}

pub const MAX_SIZE_V4: usize = 65535 - 20 - 8;
pub const MAX_SIZE_V6: usize = 65535 - 8;

fn is_link_local_v6(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// Resolves DEST: an IPv4 or IPv6 address (with `%IF` or `%INDEX` scope), or
/// a host name the system can resolve. `iface` (from `-I`) gives the scope
/// of a link-local address written without one.
pub fn resolve(dest: &str, family: Option<Family>, iface: Option<&str>) -> anyhow::Result<Target> {
    let iface_index = || -> anyhow::Result<u32> {
        match iface {
            Some(name) if name.parse::<IpAddr>().is_err() => Ok(crate::net::iface::ifindex(name)?),
            _ => Ok(0),
        }
    };
    let (addr, mut scope_id, mut scope_name) = if let Some((host, scope)) = dest.split_once('%') {
        let addr: Ipv6Addr = host
            .parse()
            .map_err(|_| anyhow!("{dest}: a %SCOPE needs an IPv6 address"))?;
        if scope.is_empty() {
            bail!("{dest}: empty scope after %");
        }
        let index = match scope.parse::<u32>() {
            Ok(n) => n,
            Err(_) => crate::net::iface::ifindex(scope)?,
        };
        (IpAddr::V6(addr), index, Some(scope.to_string()))
    } else if let Ok(addr) = dest.parse::<IpAddr>() {
        (addr, 0, None)
    } else {
        let addrs = crate::net::resolve::lookup(dest, 0)?;
        let chosen = addrs
            .iter()
            .find(|a| match family {
                Some(Family::V4) => a.is_ipv4(),
                Some(Family::V6) => a.is_ipv6(),
                // Prefer IPv4 like iputils' default resolver order does for
                // most test setups (/etc/hosts lists v4 first).
                None => a.is_ipv4(),
            })
            .or_else(|| {
                if family.is_none() {
                    addrs.first()
                } else {
                    None
                }
            })
            .ok_or_else(|| anyhow!("{dest}: no address of the requested family"))?;
        let scope = match chosen {
            SocketAddr::V6(v6) => v6.scope_id(),
            SocketAddr::V4(_) => 0,
        };
        (chosen.ip(), scope, None)
    };
    match (family, addr) {
        (Some(Family::V4), IpAddr::V6(_)) => bail!("{dest}: not an IPv4 address (-4)"),
        (Some(Family::V6), IpAddr::V4(_)) => bail!("{dest}: not an IPv6 address (-6)"),
        _ => {}
    }
    if let IpAddr::V6(v6) = addr {
        let needs_scope = is_link_local_v6(&v6) || (v6.segments()[0] & 0xff0f) == 0xff02;
        if needs_scope && scope_id == 0 {
            scope_id = iface_index()?;
            if scope_id == 0 {
                bail!("{dest}: a link-local address needs an interface: {dest}%IF or -I IF");
            }
            scope_name = iface.map(str::to_string);
        }
    }
    let shown = match (&addr, &scope_name) {
        (IpAddr::V6(_), Some(name)) => format!("{addr}%{name}"),
        _ => addr.to_string(),
    };
    Ok(Target {
        addr,
        scope_id,
        shown,
    })
}

/// A receiving ICMP socket and how it delivers packets.
struct PingSocket {
    fd: AsyncFd<Socket>,
    /// Raw IPv4 sockets deliver the IP header too; datagram sockets do not,
    /// and the kernel picks (and filters by) the identifier itself.
    raw: bool,
    v6: bool,
}

fn open_socket(target: &Target, iface: Option<&str>) -> anyhow::Result<PingSocket> {
    let v6 = target.addr.is_ipv6();
    let (domain, protocol) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (socket, raw) = match Socket::new(domain, Type::RAW, Some(protocol)) {
        Ok(s) => (s, true),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                Ok(s) => (s, false),
                Err(_) => bail!(
                    "cannot open an ICMP socket: {} (needs root or net.ipv4.ping_group_range)",
                    crate::util::io_error(&e)
                ),
            }
        }
        Err(e) => bail!("cannot open an ICMP socket: {}", crate::util::io_error(&e)),
    };
    if v6 {
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true).context("IPV6_RECVHOPLIMIT")?;
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).context("IP_RECVTTL")?;
    }
    if let Some(iface) = iface {
        match iface.parse::<IpAddr>() {
            Ok(source) => {
                if source.is_ipv6() != v6 {
                    bail!("-I {iface}: not the address family of {}", target.shown);
                }
                let scope = if v6 { target.scope_id } else { 0 };
                let local = match source {
                    IpAddr::V4(a) => SocketAddr::from((a, 0)),
                    IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope)),
                };
                socket
                    .bind(&local.into())
                    .map_err(|e| anyhow!("-I {iface}: {}", crate::util::io_error(&e)))?;
            }
            Err(_) => {
                crate::net::iface::ifindex(iface)?;
                socket
                    .bind_device(Some(iface.as_bytes()))
                    .map_err(|e| anyhow!("{iface}: {}", crate::util::io_error(&e)))?;
            }
        }
    }
    socket.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the socket, which owns its descriptor, so
    // the descriptor stays open and the same for the AsyncFd's lifetime.
    let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
    Ok(PingSocket { fd, raw, v6 })
}

/// One datagram as received.
struct Datagram {
    len: usize,
    from: Option<IpAddr>,
    ttl: Option<i32>,
}

fn recv_datagram(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let mut ttl = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => ttl = Some(t),
            _ => {}
        }
    }
    let from = msg.address.and_then(|a| match a.family() {
        Some(nix::sys::socket::AddressFamily::Inet) => {
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()))
        }
        Some(nix::sys::socket::AddressFamily::Inet6) => {
            a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip()))
        }
        _ => None,
    });
    Ok(Datagram {
        len: msg.bytes,
        from,
        ttl,
    })
}

/// What an ICMP message means to a ping.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// An echo reply: its identifier, sequence and ICMP length (header + payload).
    Reply {
        ident: u16,
        seq: u16,
        icmp_len: usize,
    },
    /// An error about one of our echo requests (carried in the error's body).
    Error {
        ident: u16,
        seq: u16,
        text: String,
    },
    Other,
}

fn v4_error_text(icmp_type: u8, code: u8) -> String {
    match (icmp_type, code) {
        (3, 0) => "Destination Net Unreachable".into(),
        (3, 1) => "Destination Host Unreachable".into(),
        (3, 2) => "Destination Protocol Unreachable".into(),
        (3, 3) => "Destination Port Unreachable".into(),
        (3, 4) => "Frag needed and DF set".into(),
        (3, 9 | 10 | 13) => "Packet filtered".into(),
        (3, c) => format!("Destination Unreachable, code {c}"),
        (11, 0) => "Time to live exceeded".into(),
        (11, _) => "Frag reassembly time exceeded".into(),
        (12, _) => "Parameter problem".into(),
        (t, c) => format!("ICMP type {t} code {c}"),
    }
}

fn v6_error_text(icmp_type: u8, code: u8) -> String {
    match (icmp_type, code) {
        (1, 0) => "Destination unreachable: No route".into(),
        (1, 1) => "Destination unreachable: Administratively prohibited".into(),
        (1, 3) => "Destination unreachable: Address unreachable".into(),
        (1, 4) => "Destination unreachable: Port unreachable".into(),
        (1, c) => format!("Destination unreachable: code {c}"),
        (2, _) => "Packet too big".into(),
        (3, 0) => "Time exceeded: Hop limit".into(),
        (3, _) => "Time exceeded: Defragmentation failure".into(),
        (4, _) => "Parameter problem".into(),
        (t, c) => format!("ICMPv6 type {t} code {c}"),
    }
}

/// Reads the identifier and sequence of the echo request quoted in an
/// IPv4 ICMP error (original IP header + the first 8 bytes of its payload).
fn quoted_echo_v4(quoted: &[u8]) -> Option<(u16, u16)> {
    let header = etherparse::Ipv4HeaderSlice::from_slice(quoted).ok()?;
    if header.protocol() != etherparse::IpNumber::ICMP {
        return None;
    }
    let icmp = quoted.get(header.slice().len()..)?;
    if icmp.len() < 8 || icmp[0] != 8 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// The same for IPv6 (original IPv6 header, ICMPv6 right behind it).
fn quoted_echo_v6(quoted: &[u8]) -> Option<(u16, u16)> {
    let header = etherparse::Ipv6HeaderSlice::from_slice(quoted).ok()?;
    if header.next_header() != etherparse::IpNumber::IPV6_ICMP {
        return None;
    }
    let icmp = quoted.get(40..)?;
    if icmp.len() < 8 || icmp[0] != 128 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// Classifies an ICMPv4 message (starting at the ICMP header).
pub fn parse_v4(icmp: &[u8]) -> Message {
    let Ok(slice) = Icmpv4Slice::from_slice(icmp) else {
        return Message::Other;
    };
    match slice.icmp_type() {
        Icmpv4Type::EchoReply(echo) => Message::Reply {
            ident: echo.id,
            seq: echo.seq,
            icmp_len: icmp.len(),
        },
        Icmpv4Type::DestinationUnreachable(_)
        | Icmpv4Type::TimeExceeded(_)
        | Icmpv4Type::ParameterProblem(_) => match quoted_echo_v4(slice.payload()) {
            Some((ident, seq)) => Message::Error {
                ident,
                seq,
                text: v4_error_text(slice.type_u8(), slice.code_u8()),
            },
            None => Message::Other,
        },
        _ => Message::Other,
    }
}

/// Classifies an ICMPv6 message.
pub fn parse_v6(icmp: &[u8]) -> Message {
    let Ok(slice) = Icmpv6Slice::from_slice(icmp) else {
        return Message::Other;
    };
    match slice.icmp_type() {
        Icmpv6Type::EchoReply(echo) => Message::Reply {
            ident: echo.id,
            seq: echo.seq,
            icmp_len: icmp.len(),
        },
        Icmpv6Type::DestinationUnreachable(_)
        | Icmpv6Type::PacketTooBig { .. }
        | Icmpv6Type::TimeExceeded(_)
        | Icmpv6Type::ParameterProblem(_) => match quoted_echo_v6(slice.payload()) {
            Some((ident, seq)) => Message::Error {
                ident,
                seq,
                text: v6_error_text(slice.type_u8(), slice.code_u8()),
            },
            None => Message::Other,
        },
        _ => Message::Other,
    }
}

/// Builds an echo request. IPv4 carries its checksum; for ICMPv6 the
/// kernel fills it in (it needs the source address we do not choose).
pub fn echo_request(v6: bool, ident: u16, seq: u16, size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let echo = IcmpEchoHeader { id: ident, seq };
    let mut packet = if v6 {
        Icmpv6Header::new(Icmpv6Type::EchoRequest(echo))
            .to_bytes()
            .to_vec()
    } else {
        Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(echo), &payload)
            .to_bytes()
            .to_vec()
    };
    packet.extend_from_slice(&payload);
    packet
}

/// A round-trip time as iputils prints it: 3 significant decimals under
/// 1 ms, fewer as the number grows.
pub fn format_rtt(rtt: Duration) -> String {
    let us = rtt.as_micros();
    if us >= 100_000 {
        format!("{}", us / 1000)
    } else if us >= 10_000 {
        format!("{}.{:01}", us / 1000, (us % 1000) / 100)
    } else if us >= 1000 {
        format!("{}.{:02}", us / 1000, (us % 1000) / 10)
    } else {
        format!("{}.{:03}", us / 1000, us % 1000)
    }
}

/// C's `%g` for a percentage (6 significant digits, no trailing zeros).
pub fn format_percent(value: f64) -> String {
    if value == value.trunc() {
        return format!("{}", value as i64);
    }
    let int_digits = if value.abs() < 1.0 {
        1
    } else {
        (value.abs().log10().floor() as usize) + 1
    };
    let text = format!("{:.*}", 6usize.saturating_sub(int_digits), value);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What a ping run counted.
#[derive(Debug, Default)]
pub struct Stats {
    pub transmitted: u32,
    pub received: u32,
    pub duplicates: u32,
    pub errors: u32,
    rtts: RttSummary,
    pub elapsed: Duration,
}

/// Round-trip times as running sums, as iputils keeps them: a ping with a
/// huge COUNT must not keep one entry per reply.
#[derive(Debug, Default)]
struct RttSummary {
    count: u64,
    /// Whole microseconds, as the reply lines show them.
    min_us: f64,
    max_us: f64,
    sum_us: f64,
    sum_sq_us: f64,
}

impl RttSummary {
    fn add(&mut self, rtt: Duration) {
        let us = rtt.as_micros() as f64;
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.sum_us += us;
        self.sum_sq_us += us * us;
        self.count += 1;
    }
}

impl Stats {
    /// The lines after `--- DEST ping statistics ---`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} packets transmitted, {} received",
            self.transmitted, self.received
        );
        if self.duplicates > 0 {
            line.push_str(&format!(", +{} duplicates", self.duplicates));
        }
        if self.errors > 0 {
            line.push_str(&format!(", +{} errors", self.errors));
        }
        if self.transmitted > 0 {
            let lost = self.transmitted.saturating_sub(self.received);
            let loss = f64::from(lost) * 100.0 / f64::from(self.transmitted);
            line.push_str(&format!(", {}% packet loss", format_percent(loss)));
        }
        line.push_str(&format!(", time {}ms\n", self.elapsed.as_millis()));
        let rtts = &self.rtts;
        if rtts.count > 0 {
            let n = rtts.count as f64;
            let (min, max) = (rtts.min_us, rtts.max_us);
            let avg = rtts.sum_us / n;
            let mean_sq = rtts.sum_sq_us / n;
            let mdev = (mean_sq - avg * avg).max(0.0).sqrt();
            line.push_str(&format!(
                "rtt min/avg/max/mdev = {:.3}/{:.3}/{:.3}/{:.3} ms\n",
                min / 1000.0,
                avg / 1000.0,
                max / 1000.0,
                mdev / 1000.0
            ));
        }
        line
    }
}

/// An identifier per run: distinct for concurrent pings of this process
/// (background jobs) and, through the pid, from other processes.
fn next_ident() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (std::process::id() as u16) ^ n.wrapping_mul(0x9e37)
}

async fn recv_one(socket: &PingSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    loop {
        let mut guard = socket.fd.readable().await?;
        if let Ok(result) = guard.try_io(|fd| recv_datagram(fd.get_ref(), buf)) {
            return result;
        }
    }
}

async fn send_one(socket: &PingSocket, packet: &[u8], to: &SockAddr) -> io::Result<()> {
    loop {
        let mut guard = socket.fd.writable().await?;
        if let Ok(result) = guard.try_io(|fd| fd.get_ref().send_to(packet, to)) {
            return result.map(|_| ());
        }
    }
}

/// The first line, as iputils words it for each family.
fn header(dest: &str, target: &Target, size: usize) -> String {
    if target.addr.is_ipv6() {
        format!("PING {dest} ({}) {size} data bytes\n", target.shown)
    } else {
        format!(
            "PING {dest} ({}) {size}({}) bytes of data.\n",
            target.shown,
            size + 28
        )
    }
}

/// Runs a ping, printing as iputils does, until COUNT replies, the end
/// timeout or Ctrl-C (a change of `interrupts`). Returns the counts.
pub async fn run<W: Write>(
    target: &Target,
    dest: &str,
    options: &Options,
    out: &mut W,
    mut interrupts: watch::Receiver<u64>,
) -> anyhow::Result<Stats> {
    let socket = open_socket(target, options.iface.as_deref())?;
    let ident = next_ident();
    let to: SockAddr = match target.addr {
        IpAddr::V4(a) => SocketAddr::from((a, 0)).into(),
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, target.scope_id)).into(),
    };
    // Multicast (ff02::1) is answered by many; any source counts then.
    let any_source = match target.addr {
        IpAddr::V4(a) => a.is_multicast() || a == Ipv4Addr::BROADCAST,
        IpAddr::V6(a) => a.is_multicast(),
    };

    let mut stats = Stats::default();
    let mut sent_at: HashMap<u16, Instant> = HashMap::new();
    let mut answered: HashSet<u16> = HashSet::new();
    // Requests with a reply or an error: when all are, ping is done.
    let mut settled: HashSet<u16> = HashSet::new();
    let start = Instant::now();
    let mut next_send = start;
    let mut deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 65536 + 512];
    loop {
        let all_sent = stats.transmitted >= options.count;
        if all_sent && (stats.received >= options.count || settled.len() as u32 >= options.count) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_send), if !all_sent => {
                let seq = (stats.transmitted + 1) as u16;
                let packet = echo_request(socket.v6, ident, seq, options.size);
                let now = Instant::now();
                match send_one(&socket, &packet, &to).await {
                    // The header only once the first request went out: an
                    // unroutable destination gives just the error, as in iputils.
                    Ok(()) if stats.transmitted == 0 => {
                        out.write_all(header(dest, target, options.size).as_bytes())?;
                    }
                    Ok(()) => {}
                    Err(e) if stats.transmitted == 0 => {
                        bail!("sendto {}: {}", target.shown, crate::util::io_error(&e));
                    }
                    Err(e) => {
                        writeln!(out, "ping: sendto: {}", crate::util::io_error(&e))?;
                        stats.errors += 1;
                    }
                }
                sent_at.insert(seq, now);
                answered.remove(&seq);
                settled.remove(&seq);
                stats.transmitted += 1;
                next_send += options.interval;
                if stats.transmitted >= options.count {
                    deadline = Some(now + options.timeout);
                }
            }
            got = recv_one(&socket, &mut buf) => {
                let now = Instant::now();
                let datagram = match got {
                    Ok(d) => d,
                    // An asynchronous error reported on the socket: already
                    // counted through the ICMP error itself, if any.
                    Err(_) => continue,
                };
                let data = &buf[..datagram.len];
                let (from, ttl, icmp) = if socket.v6 || !socket.raw {
                    (datagram.from, datagram.ttl, data)
                } else {
                    let Ok(ip) = etherparse::Ipv4HeaderSlice::from_slice(data) else { continue };
                    let from = IpAddr::V4(ip.source_addr());
                    (Some(from), Some(i32::from(ip.ttl())), &data[ip.slice().len()..])
                };
                let message = if socket.v6 { parse_v6(icmp) } else { parse_v4(icmp) };
                match message {
                    Message::Reply { ident: id, seq, icmp_len } => {
                        if socket.raw && id != ident {
                            continue;
                        }
                        if !any_source && from.is_some_and(|f| f != target.addr) {
                            continue;
                        }
                        let Some(sent) = sent_at.get(&seq).copied() else { continue };
                        let rtt = now - sent;
                        let dup = !answered.insert(seq);
                        settled.insert(seq);
                        if dup {
                            stats.duplicates += 1;
                        } else {
                            stats.received += 1;
                            stats.rtts.add(rtt);
                        }
                        let from_text = match from {
                            Some(f) if f != target.addr => f.to_string(),
                            _ => target.shown.clone(),
                        };
                        let ttl_text = ttl.map(|t| format!(" ttl={t}")).unwrap_or_default();
                        writeln!(
                            out,
                            "{icmp_len} bytes from {from_text}: icmp_seq={seq}{ttl_text} time={} ms{}",
                            format_rtt(rtt),
                            if dup { " (DUP!)" } else { "" }
                        )?;
                        out.flush()?;
                    }
                    Message::Error { ident: id, seq, text } => {
                        if id != ident || !sent_at.contains_key(&seq) {
                            continue;
                        }
                        stats.errors += 1;
                        settled.insert(seq);
                        let from_text = from.map(|f| f.to_string()).unwrap_or_else(|| "?".into());
                        writeln!(out, "From {from_text} icmp_seq={seq} {text}")?;
                        out.flush()?;
                    }
                    Message::Other => {}
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or(start)).await }, if deadline.is_some() => {
                break;
            }
            _ = interrupts.changed() => break,
        }
    }
    stats.elapsed = start.elapsed();
    writeln!(out, "\n--- {dest} ping statistics ---")?;
    write!(out, "{}", stats.summary())?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_printed_like_iputils() {
        assert_eq!(format_rtt(Duration::from_micros(45)), "0.045");
        assert_eq!(format_rtt(Duration::from_micros(1234)), "1.23");
        assert_eq!(format_rtt(Duration::from_micros(12345)), "12.3");
        assert_eq!(format_rtt(Duration::from_micros(123456)), "123");
    }

    #[test]
    fn loss_is_printed_like_percent_g() {
        assert_eq!(format_percent(0.0), "0");
        assert_eq!(format_percent(100.0), "100");
        assert_eq!(format_percent(25.0), "25");
        assert_eq!(format_percent(100.0 / 3.0), "33.3333");
        assert_eq!(format_percent(200.0 / 3.0), "66.6667");
        assert_eq!(format_percent(0.5), "0.5");
    }

    #[test]
    fn summary_lines() {
        let mut rtts = RttSummary::default();
        for us in [200, 100, 300] {
            rtts.add(Duration::from_micros(us));
        }
        let stats = Stats {
            transmitted: 4,
            received: 3,
            errors: 1,
            rtts,
            elapsed: Duration::from_millis(3004),
            ..Default::default()
        };
        assert_eq!(
            stats.summary(),
            "4 packets transmitted, 3 received, +1 errors, 25% packet loss, time 3004ms\n\
             rtt min/avg/max/mdev = 0.100/0.200/0.300/0.082 ms\n"
        );
        let none = Stats {
            transmitted: 2,
            elapsed: Duration::from_millis(1001),
            ..Default::default()
        };
        assert_eq!(
            none.summary(),
            "2 packets transmitted, 0 received, 100% packet loss, time 1001ms\n"
        );
    }

    #[test]
    fn echo_request_v4_has_valid_checksum_and_round_trips() {
        let packet = echo_request(false, 0x1234, 7, 56);
        assert_eq!(packet.len(), 64);
        let slice = Icmpv4Slice::from_slice(&packet).unwrap();
        assert_eq!(
            slice.icmp_type(),
            Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 0x1234, seq: 7 })
        );
        // The one's-complement sum over a correct ICMP message is 0xffff.
        let sum = packet
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        assert_eq!((folded & 0xffff) + (folded >> 16), 0xffff);
        // Turned into a reply (type 0), it parses as ours.
        let mut reply = packet.clone();
        reply[0] = 0;
        assert_eq!(
            parse_v4(&reply),
            Message::Reply {
                ident: 0x1234,
                seq: 7,
                icmp_len: 64
            }
        );
    }

    #[test]
    fn v4_error_quoting_our_request_is_matched() {
        let request = echo_request(false, 0x4242, 3, 56);
        let ip = etherparse::Ipv4Header::new(
            request.len() as u16,
            64,
            etherparse::IpNumber::ICMP,
            [10, 0, 0, 1],
            [10, 0, 0, 9],
        )
        .unwrap();
        let mut error = vec![3, 1, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&ip.to_bytes());
        error.extend_from_slice(&request[..8]);
        assert_eq!(
            parse_v4(&error),
            Message::Error {
                ident: 0x4242,
                seq: 3,
                text: "Destination Host Unreachable".into()
            }
        );
    }

    #[test]
    fn v6_reply_and_error() {
        let mut reply = echo_request(true, 9, 2, 56);
        reply[0] = 129;
        assert_eq!(
            parse_v6(&reply),
            Message::Reply {
                ident: 9,
                seq: 2,
                icmp_len: 64
            }
        );
        let request = echo_request(true, 9, 2, 56);
        let ip = etherparse::Ipv6Header {
            payload_length: request.len() as u16,
            next_header: etherparse::IpNumber::IPV6_ICMP,
            hop_limit: 64,
            ..Default::default()
        };
        let mut error = vec![1, 3, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&ip.to_bytes());
        error.extend_from_slice(&request);
        assert_eq!(
            parse_v6(&error),
            Message::Error {
                ident: 9,
                seq: 2,
                text: "Destination unreachable: Address unreachable".into()
            }
        );
        // Neighbour solicitations and the like are not ours.
        assert_eq!(parse_v6(&[135, 0, 0, 0, 0, 0, 0, 0]), Message::Other);
    }

    #[test]
    fn destinations_parse_with_scope() {
        let t = resolve("10.0.0.2", None, None).unwrap();
        assert_eq!(t.addr, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(t.shown, "10.0.0.2");
        let t = resolve("fe80::1%1", None, None).unwrap();
        assert_eq!(t.scope_id, 1);
        assert_eq!(t.shown, "fe80::1%1");
        let t = resolve("fe80::1%lo", None, None).unwrap();
        assert_eq!(t.scope_id, 1);
        assert_eq!(t.shown, "fe80::1%lo");
        let t = resolve("fe80::1", None, Some("lo")).unwrap();
        assert_eq!((t.scope_id, t.shown.as_str()), (1, "fe80::1%lo"));
        assert!(resolve("fe80::1", None, None).is_err());
        assert!(resolve("fe80::1%nosuchif0", None, None)
            .unwrap_err()
            .to_string()
            .contains("no such interface"));
        assert!(resolve("10.0.0.1%lo", None, None).is_err());
        assert!(resolve("10.0.0.1", Some(Family::V6), None).is_err());
        assert!(resolve("::1", Some(Family::V4), None).is_err());
        assert_eq!(
            resolve("localhost", Some(Family::V4), None).unwrap().addr,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }
}
