//! Fake hosts: addresses on the far side of an interface that answer the
//! kernel's ARP requests, Neighbor Solicitations (and duplicate address
//! probes, with the R flag for a `router`), echo requests (`icmp`) and,
//! for a router that advertises (`ra`, or a `prefix` to announce), Router
//! Solicitations.
//! Two backends behind the same commands: a TC egress eBPF program that
//! answers inside the kernel (ebpf.rs), and a userspace task on an
//! AF_PACKET socket that builds its answers with the packet model
//! (af_packet.rs). One job per interface (`JobKind::Fakehost`); the host
//! table below says which hosts each one answers for.

pub mod af_packet;
pub mod ebpf;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use myinit_common::fakehost::{
    FakeHostConfig, FakeHostCounters, FakeHostKey, ANSWER_ARP, ANSWER_DAD, ANSWER_ECHO,
    ANSWER_KINDS, ANSWER_NA, ANSWER_RA, FAKEHOST_ALIAS, FAKEHOST_ICMP, FAKEHOST_ROUTER,
    FAKEHOST_V4, MAX_ROUTERS,
};

use crate::jobs::{JobId, JobKind};
use crate::kernel::requirements::{needs, Area, Requirements};
use crate::packet::MacAddr;
use crate::state::State;

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// eBPF, else the packet backend (saying why).
    Auto,
    Ebpf,
    Packet,
}

/// What fakehost needs from the kernel (CONFIG_NET_CLS_BPF, the clsact
/// qdisc and AF_PACKET are capture's too).
pub const REQUIREMENTS: Requirements = Requirements {
    capability: "fakehost",
    options: &[needs(
        Area::Net,
        "CONFIG_IPV6",
        "IPv6: ping6, ip -6, fakehost on IPv6",
    )],
    backends: None,
    self_test: Some(|| Box::pin(ebpf::self_test())),
};

/// One fake host as `fakehost add` described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeHost {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub icmp: bool,
    /// The R flag in its Neighbor Advertisements: all the original's
    /// `router` did.
    pub router: bool,
    /// Answers Router Solicitations with Router Advertisements (`ra`).
    pub ra: bool,
    /// Announced in Router Advertisements (`prefix P/LEN`; implies `ra`).
    pub prefix: Option<(Ipv6Addr, u8)>,
}

/// The map key of an address: IPv4 as `::ffff:a.b.c.d`.
pub fn key_of(ip: IpAddr) -> FakeHostKey {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    FakeHostKey { addr: v6.octets() }
}

/// The default MAC of a fake host: locally administered, unicast, stable
/// and distinct per address: `02:00:` and the IPv4 address, or `02:06:`
/// and a 32-bit FNV-1a hash of the IPv6 address.
pub fn default_mac(ip: IpAddr) -> MacAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            MacAddr([0x02, 0x00, o[0], o[1], o[2], o[3]])
        }
        IpAddr::V6(v6) => {
            let mut hash: u32 = 0x811c_9dc5;
            for byte in v6.octets() {
                hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
            }
            let h = hash.to_be_bytes();
            MacAddr([0x02, 0x06, h[0], h[1], h[2], h[3]])
        }
    }
}

/// The link-local address of a MAC by modified EUI-64 (RFC 4291 §2.5.1).
pub fn link_local_of(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

impl FakeHost {
    /// Whether it answers Router Solicitations (a router with `ra` or a
    /// prefix to announce).
    pub fn advertises(&self) -> bool {
        self.router && (self.ra || self.prefix.is_some())
    }

    /// Where an advertising router's RAs come from: its address if
    /// link-local, else the link-local address of its MAC (an RA from any
    /// other source is dropped by the receiver, RFC 4861 §6.1.2).
    pub fn router_source(&self) -> Option<Ipv6Addr> {
        match self.ip {
            IpAddr::V6(v6) if self.advertises() => Some(if v6.is_unicast_link_local() {
                v6
            } else {
                link_local_of(self.mac)
            }),
            _ => None,
        }
    }

    /// A second address answered for NDP: a router's link-local source when
    /// it is not the host's own address (the kernel resolves its default
    /// router by it).
    pub fn alias(&self) -> Option<Ipv6Addr> {
        self.router_source().filter(|ll| IpAddr::V6(*ll) != self.ip)
    }

    pub fn config(&self) -> FakeHostConfig {
        let mut flags = 0;
        if self.icmp {
            flags |= FAKEHOST_ICMP;
        }
        if self.router {
            flags |= FAKEHOST_ROUTER;
        }
        if self.ip.is_ipv4() {
            flags |= FAKEHOST_V4;
        }
        let (prefix, prefix_len) = self
            .prefix
            .map_or(([0; 16], 0), |(p, len)| (p.octets(), len));
        FakeHostConfig {
            mac: self.mac.0,
            flags,
            prefix_len,
            prefix,
            router_source: self.router_source().map_or([0; 16], |a| a.octets()),
        }
    }

    /// The alias entry's configuration (NDP only).
    pub fn alias_config(&self) -> FakeHostConfig {
        let mut config = self.config();
        config.flags = (config.flags & FAKEHOST_ROUTER) | FAKEHOST_ALIAS;
        config
    }

    /// `icmp router prefix 2001:db8::/64`, or `-`.
    pub fn options(&self) -> String {
        let mut words = Vec::new();
        if self.icmp {
            words.push("icmp".to_string());
        }
        if self.router {
            words.push("router".to_string());
        }
        if self.ra && self.prefix.is_none() {
            words.push("ra".to_string());
        }
        if let Some((p, len)) = self.prefix {
            words.push(format!("prefix {p}/{len}"));
        }
        if words.is_empty() {
            "-".into()
        } else {
            words.join(" ")
        }
    }
}

/// The words after `fakehost add IF IP`: `[mac MAC] [icmp] [router]
/// [prefix P/LEN]`, in any order.
pub fn parse_host(ip: &str, words: &[String]) -> anyhow::Result<FakeHost> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| anyhow!("{ip}: not an IPv4 or IPv6 address"))?;
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast() || v6.is_loopback()),
    };
    if !unicast || ip.is_loopback() {
        bail!("{ip}: a fake host needs a unicast address");
    }
    let mut host = FakeHost {
        ip,
        mac: default_mac(ip),
        icmp: false,
        router: false,
        ra: false,
        prefix: None,
    };
    let mut words = words.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "icmp" => host.icmp = true,
            "router" => host.router = true,
            "ra" => host.ra = true,
            "mac" => {
                let text = words.next().ok_or_else(|| anyhow!("mac needs a MAC"))?;
                let mac: MacAddr = text.parse().map_err(|_| {
                    anyhow!("mac {text}: not a MAC address (like 02:00:00:00:00:01)")
                })?;
                if mac.0[0] & 1 != 0 || mac.0 == [0; 6] {
                    bail!("mac {text}: a fake host needs a unicast MAC address");
                }
                host.mac = mac;
            }
            "prefix" => {
                let text = words.next().ok_or_else(|| anyhow!("prefix needs P/LEN"))?;
                let bad =
                    || anyhow!("prefix {text}: not an IPv6 prefix P/LEN (like 2001:db8:1::/64)");
                let (p, len) = text.split_once('/').ok_or_else(bad)?;
                let p: Ipv6Addr = p.parse().map_err(|_| bad())?;
                let len: u8 = len.parse().map_err(|_| bad())?;
                if len == 0 || len > 128 {
                    return Err(bad());
                }
                let mask = u128::MAX << (128 - u32::from(len));
                host.prefix = Some((Ipv6Addr::from(u128::from(p) & mask), len));
            }
            other => {
                bail!(
                    "unexpected word '{other}' (expected mac MAC, icmp, router, ra or prefix P/LEN)"
                )
            }
        }
    }
    if host.ip.is_ipv4() && host.router {
        bail!(
            "router is for IPv6 fake hosts (the R flag of Neighbor Advertisements); {ip} is IPv4"
        );
    }
    if host.prefix.is_some() && !host.router {
        bail!("prefix is announced in Router Advertisements: it needs router");
    }
    if host.ra && !host.router {
        bail!("ra answers Router Solicitations as a router: it needs router");
    }
    Ok(host)
}

/// Answers sent, by `ANSWER_*` kind.
pub type Counts = [u64; ANSWER_KINDS];

/// What a running backend offers the table.
pub trait HostSet: Send {
    fn insert(&mut self, host: &FakeHost) -> anyhow::Result<()>;
    fn remove(&mut self, host: &FakeHost) -> anyhow::Result<()>;
    fn counts(&self, host: &FakeHost) -> Counts;
}

/// One interface's hosts and its running job.
struct Interface {
    /// `ebpf (tcx)`, `packet (tap)`, …
    backend: String,
    hosts: BTreeMap<IpAddr, FakeHost>,
    set: Box<dyn HostSet>,
}

/// Every interface with fake hosts. A process-wide table (not in `State`):
/// only the fakehost commands and its jobs touch it.
static TABLE: Mutex<BTreeMap<String, Interface>> = Mutex::new(BTreeMap::new());

fn table() -> std::sync::MutexGuard<'static, BTreeMap<String, Interface>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn job_id(iface: &str) -> JobId {
    JobId::new(JobKind::Fakehost, iface)
}

/// Starts the job of `iface` that answers for its fake hosts: `answerer`
/// drained in batches of `batch` until stopped or gone, then `report`
/// makes its last line.
fn spawn_answerer<S>(
    state: &State,
    iface: &str,
    backend: &str,
    batch: usize,
    mut answerer: S,
    report: impl FnOnce(S, crate::jobs::Ended) -> String + Send + 'static,
) -> anyhow::Result<()>
where
    S: crate::jobs::EventSource + Send + 'static,
{
    state.jobs.spawn(
        &state.rt,
        job_id(iface),
        format!("fakehost {iface} {backend}"),
        move |cancel| async move {
            let ended = crate::jobs::drain_events(&mut answerer, &cancel, batch).await;
            report(answerer, ended)
        },
    )?;
    Ok(())
}

/// Adds a fake host; returns the lines to print.
pub fn add(
    state: &State,
    iface: &str,
    host: FakeHost,
    backend: Backend,
) -> anyhow::Result<Vec<String>> {
    let ifindex = crate::net::iface::ifindex(iface)?;
    // ARP and neighbour discovery need an Ethernet link: on an L3 device
    // (TUN, tunnels) a program would attach and never be asked.
    let arphrd = state.rt.block_on(async {
        let nl = crate::net::netlink::Netlink::open()?;
        anyhow::Ok(nl.link(ifindex).await?.link_type)
    })?;
    if arphrd != crate::net::iface::ARPHRD_ETHER {
        bail!("{iface}: fake hosts need an Ethernet interface (veth, TAP, bridge…); this one is of ARPHRD type {arphrd}, with no link-layer addresses to answer for");
    }
    let mut lines = Vec::new();
    let mut table = table();
    // A job that ended by itself (its interface went away) leaves its
    // entry behind: start afresh.
    if table.contains_key(iface) && !state.jobs.is_running(&job_id(iface)) {
        table.remove(iface);
    }
    if let Some(entry) = table.get(iface) {
        if entry.hosts.contains_key(&host.ip) {
            bail!(
                "{iface} {}: exists already (fakehost del {iface} {} first)",
                host.ip,
                host.ip
            );
        }
        let running = if entry.backend.starts_with("ebpf") {
            Backend::Ebpf
        } else {
            Backend::Packet
        };
        if backend != Backend::Auto && backend != running {
            bail!(
                "{iface} answers with the {} backend: --backend {} needs its hosts deleted first",
                entry.backend,
                if backend == Backend::Ebpf {
                    "ebpf"
                } else {
                    "packet"
                }
            );
        }
    }
    if host.advertises() {
        let routers = table
            .get(iface)
            .map_or(0, |e| e.hosts.values().filter(|h| h.advertises()).count());
        if routers >= MAX_ROUTERS as usize {
            bail!(
                "{iface} has {routers} advertising routers already, as many as an interface takes"
            );
        }
        // Two routers must not advertise from one link-local address.
        if let (Some(source), Some(entry)) = (host.router_source(), table.get(iface)) {
            if let Some(other) = entry
                .hosts
                .values()
                .find(|h| h.router_source() == Some(source))
            {
                bail!(
                    "{iface}: router {} advertises from {source} already (give {} another mac)",
                    other.ip,
                    host.ip
                );
            }
        }
    }
    if let Some(entry) = table.get_mut(iface) {
        entry.set.insert(&host)?;
        entry.hosts.insert(host.ip, host.clone());
        lines.push(added_line(iface, &host, &entry.backend));
        return Ok(lines);
    }
    let (set, name) = match backend {
        Backend::Ebpf => {
            ebpf::start(state, iface).map_err(|e| anyhow!("{iface}: eBPF backend: {e:#}"))?
        }
        Backend::Packet => af_packet::start(state, iface, ifindex)?,
        Backend::Auto => match ebpf::start(state, iface) {
            Ok(started) => started,
            Err(e) => {
                let started = af_packet::start(state, iface, ifindex)
                    .map_err(|p| anyhow!("{iface}: eBPF backend: {e:#}; packet backend: {p:#}"))?;
                lines.push(format!(
                    "fakehost: {iface}: eBPF unavailable ({e:#}); using the packet backend"
                ));
                started
            }
        },
    };
    let mut entry = Interface {
        backend: name,
        hosts: BTreeMap::new(),
        set,
    };
    if let Err(e) = entry.set.insert(&host) {
        drop(entry);
        state.jobs.stop(&job_id(iface));
        return Err(e);
    }
    entry.hosts.insert(host.ip, host.clone());
    lines.push(added_line(iface, &host, &entry.backend));
    table.insert(iface.to_string(), entry);
    Ok(lines)
}

fn added_line(iface: &str, host: &FakeHost, backend: &str) -> String {
    format!(
        "fakehost: {iface} {} mac {} {} (backend {backend})",
        host.ip,
        host.mac.lower(),
        host.options()
    )
}

/// Deletes a fake host; the last one on an interface stops its job (the
/// program is detached before this returns). Returns the lines to print.
pub fn del(state: &State, iface: &str, ip: &str) -> anyhow::Result<Vec<String>> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| anyhow!("{ip}: not an IPv4 or IPv6 address"))?;
    let mut table = table();
    let entry = table
        .get_mut(iface)
        .filter(|e| e.hosts.contains_key(&ip))
        .ok_or_else(|| anyhow!("{iface} {ip}: no such fake host (see fakehost show)"))?;
    let host = entry.hosts[&ip].clone();
    entry.set.remove(&host)?;
    entry.hosts.remove(&ip);
    let mut lines = Vec::new();
    if entry.hosts.is_empty() {
        table.remove(iface);
        drop(table);
        if let Some(report) = state.jobs.stop(&job_id(iface)) {
            lines.push(report);
        }
    }
    Ok(lines)
}

/// The `fakehost show` table.
pub fn show(state: &State) -> String {
    let table = table();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<12} {:<26} {:<18} {:<14} {:>6} {:>6} {:>6} {:>6} {:>6}  OPTIONS",
        "IFACE", "IP", "MAC", "BACKEND", "ARP", "NA", "DAD", "ECHO", "RA"
    );
    // An interface whose job ended by itself (it went away) answers nothing.
    let live = table
        .iter()
        .filter(|(iface, _)| state.jobs.is_running(&job_id(iface)));
    for (iface, entry) in live {
        for host in entry.hosts.values() {
            let c = entry.set.counts(host);
            let _ = writeln!(
                text,
                "{:<12} {:<26} {:<18} {:<14} {:>6} {:>6} {:>6} {:>6} {:>6}  {}",
                iface,
                host.ip,
                host.mac.lower().to_string(),
                entry.backend,
                c[ANSWER_ARP as usize],
                c[ANSWER_NA as usize],
                c[ANSWER_DAD as usize],
                c[ANSWER_ECHO as usize],
                c[ANSWER_RA as usize],
                host.options()
            );
        }
    }
    text
}

/// Counters of a host and its alias summed.
pub fn add_counts(a: &mut Counts, b: &FakeHostCounters) {
    for (x, y) in a.iter_mut().zip(b.answers) {
        *x += y;
    }
}

/// One answer, for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub kind: u8,
    pub target: IpAddr,
    pub asker: IpAddr,
    pub mac: MacAddr,
}

impl Answer {
    /// The log line, in the original's words for ARP.
    pub fn line(&self, iface: &str) -> String {
        let (target, asker, mac) = (self.target, self.asker, self.mac.lower());
        match self.kind {
            ANSWER_ARP => format!(
                "ARP: Who has {target}? Tell {asker} - Responding with MAC {mac} ({iface})"
            ),
            ANSWER_NA => format!(
                "NDP: Who has {target}? Tell {asker} - Advertising MAC {mac} ({iface})"
            ),
            ANSWER_DAD => format!(
                "NDP: Duplicate address probe for {target} - Advertising MAC {mac} to ff02::1 ({iface})"
            ),
            ANSWER_ECHO => format!("ICMP: Echo request {asker} > {target} - Replying ({iface})"),
            ANSWER_RA => format!(
                "NDP: Router solicitation from {asker} - Advertising router {target} ({iface})"
            ),
            _ => format!("fakehost: answer of unknown kind {} ({iface})", self.kind),
        }
    }
}

/// Log lines at most this often on average, with bursts up to `BURST`.
const LINES_PER_SECOND: u32 = 20;
const BURST: u32 = 20;

/// Limits a job's log lines under a flood: a token bucket, and one line
/// saying how many were suppressed once lines flow again (or at the end).
pub struct LogLimiter {
    iface: String,
    tokens: u32,
    refilled: Instant,
    suppressed: u64,
    pub suppressed_total: u64,
    /// When the last suppressed-count note was printed: at most one a
    /// second, or under a flood every line let through came with one.
    noted: Option<Instant>,
}

impl LogLimiter {
    pub fn new(iface: &str) -> Self {
        LogLimiter {
            iface: iface.to_string(),
            tokens: BURST,
            refilled: Instant::now(),
            suppressed: 0,
            suppressed_total: 0,
            noted: None,
        }
    }

    /// The lines to print for `line` now (none, it, or a suppressed count
    /// and it). `line` is made only when it is printed: under a flood most
    /// are not, and formatting each was most of the reader's work.
    pub fn offer(&mut self, line: impl FnOnce() -> String, now: Instant) -> Vec<String> {
        let earned = now.duration_since(self.refilled).as_millis() as u64
            * u64::from(LINES_PER_SECOND)
            / 1000;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(BURST)) as u32;
            self.refilled = now;
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            self.suppressed_total += 1;
            return Vec::new();
        }
        self.tokens -= 1;
        let mut out = Vec::new();
        if self
            .noted
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            if let Some(note) = self.flush() {
                out.push(note);
                self.noted = Some(now);
            }
        }
        out.push(line());
        out
    }

    /// Counts `n` lines suppressed before they were offered (answers the
    /// eBPF program made no event for).
    pub fn skipped(&mut self, n: u64) {
        self.suppressed += n;
        self.suppressed_total += n;
    }

    /// The suppressed-count line, if lines were held back since the last one.
    pub fn flush(&mut self) -> Option<String> {
        (self.suppressed > 0).then(|| {
            let n = std::mem::take(&mut self.suppressed);
            format!("fakehost: {}: {n} log lines suppressed", self.iface)
        })
    }
}

/// Prints a job's log lines (stderr: a background job must not write into
/// a foreground command's redirect file).
pub fn print_lines(lines: Vec<String>) {
    for line in lines {
        eprintln!("{line}");
    }
}

/// How often a job with nothing to read looks again.
pub const POLL: Duration = Duration::from_millis(10);

/// Shared counters of the packet backend, by host address.
pub type SharedHosts = Arc<Mutex<BTreeMap<IpAddr, (FakeHost, Counts)>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn default_macs_are_local_unicast_stable_and_distinct() {
        let a = default_mac("10.0.0.2".parse().unwrap());
        assert_eq!(a.lower().to_string(), "02:00:0a:00:00:02");
        let b = default_mac("2001:db8::1".parse().unwrap());
        let c = default_mac("2001:db8:1::1".parse().unwrap());
        assert_ne!(b, c);
        assert_eq!(b, default_mac("2001:db8::1".parse().unwrap()));
        for m in [a, b, c] {
            assert_eq!(m.0[0] & 3, 2, "{m} is not local unicast");
        }
    }

    #[test]
    fn host_words_parse_and_bad_ones_say_why() {
        let h = parse_host(
            "2001:db8::1",
            &words("icmp router prefix 2001:db8:1::5/64 mac 02:aa:bb:cc:dd:ee"),
        )
        .unwrap();
        assert!(h.icmp && h.router);
        assert_eq!(h.prefix, Some(("2001:db8:1::".parse().unwrap(), 64)));
        assert_eq!(h.mac.lower().to_string(), "02:aa:bb:cc:dd:ee");
        assert_eq!(h.alias(), Some("fe80::aa:bbff:fecc:ddee".parse().unwrap()));
        let err = |ip: &str, w: &str| parse_host(ip, &words(w)).unwrap_err().to_string();
        assert!(err("1.2.3", "").contains("not an IPv4 or IPv6 address"));
        assert!(err("10.0.0.2", "router").contains("router is for IPv6"));
        assert!(err("10.0.0.2", "mac zz").contains("not a MAC address"));
        assert!(err("2001:db8::1", "prefix 2001:db8::/64").contains("needs router"));
        assert!(err("2001:db8::1", "fast").contains("unexpected word 'fast'"));
        assert!(err("ff02::1", "").contains("unicast"));
    }

    #[test]
    fn the_log_limiter_counts_what_it_holds_back() {
        let mut limiter = LogLimiter::new("v0");
        let start = Instant::now();
        let mut printed = 0;
        for i in 0..1000 {
            printed += limiter.offer(|| format!("line {i}"), start).len();
        }
        assert_eq!(printed, BURST as usize);
        let later = limiter.offer(|| "again".into(), start + Duration::from_secs(1));
        assert_eq!(
            later[0],
            format!("fakehost: v0: {} log lines suppressed", 1000 - BURST)
        );
        assert_eq!(later[1], "again");
    }

    #[test]
    fn under_a_steady_flood_the_suppressed_note_comes_once_a_second() {
        let mut limiter = LogLimiter::new("v0");
        let start = Instant::now();
        let mut lines = Vec::new();
        // 1000 answers a second for 3 s, after the burst.
        for ms in 0..3000u64 {
            lines.extend(limiter.offer(|| "echo".into(), start + Duration::from_millis(ms)));
        }
        let notes = lines.iter().filter(|l| l.ends_with("suppressed")).count();
        let echoes = lines.len() - notes;
        assert!((2..=3).contains(&notes), "{notes} notes: {lines:?}");
        assert!(
            echoes <= (BURST + 3 * LINES_PER_SECOND) as usize,
            "{echoes}"
        );
        let told: u64 = lines
            .iter()
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
            .sum();
        let rest = limiter.flush().map_or(0, |l| {
            l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap()
        });
        assert_eq!(told + rest + echoes as u64, 3000);
    }
}
