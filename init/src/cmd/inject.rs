//! `inject FILE IF`: sends the packets of a pcap or pcapng file into an
//! interface. Into a TAP made by `tap add` the frames are written to the
//! TAP's fd, so the kernel *receives* them on IF (what a test bench needs);
//! on any other interface they go out through an AF_PACKET socket (sent on
//! IF, received by its peer).
//!
//! The whole file is read and checked before the first packet leaves, so bad
//! input sends nothing.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::anyhow;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;

use super::builtin::parse_seconds;
use super::{usage, CommandSpec, Interrupted};
use crate::net::iface::{self, ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE};
use crate::net::netlink::Netlink;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "inject",
    usage: "inject FILE IF [--count N] [--interval SECONDS]",
    summary: "send the packets of a pcap/pcapng file into an interface",
    help: "  FILE              classic pcap (µs or ns timestamps, either byte order)\n\
           \x20                   or pcapng; link types 1 (Ethernet), 101 (raw IP),\n\
           \x20                   228 (IPv4) and 229 (IPv6)\n\
           \x20 IF                a TAP made by `tap add`: the kernel receives the\n\
           \x20                   frames on IF; any other interface: they are sent on\n\
           \x20                   IF (AF_PACKET), so its peer receives them\n\
           \x20 --count N         send N packets in all, going round the file again\n\
           \x20                   as needed (default: each packet of the file once)\n\
           \x20 --interval SECS   pause between packets (fractions allowed; default 0)\n\n\
           Ethernet frames go to Ethernet interfaces (and lo); raw IP packets to\n\
           interfaces without a link header (TUN, WireGuard, IP tunnels).\n\
           The file is checked first: a bad file sends nothing. Ctrl-C stops.\n\
           Example: inject /mnt/host/frames.pcap tap0 --count 1000 --interval 0.01",
    run: inject,
    cli: None,
}];

struct Args {
    file: String,
    iface: String,
    count: Option<u64>,
    interval: Duration,
}

// By hand rather than clap: clap's one-line errors lose the names of
// missing arguments, and this syntax is small.
fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let (mut count, mut interval) = (None, Duration::ZERO);
    let mut words = args.iter();
    let mut options_done = false;
    while let Some(word) = words.next() {
        if options_done || !word.starts_with("--") {
            positional.push(word.clone());
            continue;
        }
        let (option, inline) = match word.split_once('=') {
            Some((o, v)) => (o, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        if option == "--" {
            options_done = true;
            continue;
        }
        if option != "--count" && option != "--interval" {
            return Err(usage(format!("unknown option {option}")));
        }
        let value = inline
            .or_else(|| words.next().cloned())
            .ok_or_else(|| usage(format!("{option} needs a value")))?;
        if option == "--count" {
            match value.parse::<u64>() {
                Ok(0) => return Err(usage("--count must be at least 1")),
                Ok(n) => count = Some(n),
                Err(_) => return Err(usage(format!("--count: not a number: {value}"))),
            }
        } else {
            interval = parse_seconds(&value)?;
        }
    }
    match <[String; 2]>::try_from(positional) {
        Ok([file, iface]) => Ok(Args {
            file,
            iface,
            count,
            interval,
        }),
        Err(p) if p.is_empty() => Err(usage("missing FILE and IF")),
        Err(p) if p.len() == 1 => Err(usage("missing IF")),
        Err(p) => Err(usage(format!("unexpected argument '{}'", p[2]))),
    }
}

// Link types (LINKTYPE_*) this command sends.
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;

// ARPHRD_* types of interfaces without a link-layer header, to which raw IP
// goes as it is (besides ARPHRD_NONE: TUN, WireGuard).
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_RAWIP: u16 = 519;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_802_3: u16 = 0x0001;

/// One packet of the file: its link type, bytes and where its record starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub linktype: u32,
    pub data: &'a [u8],
    pub offset: usize,
}

impl Packet<'_> {
    fn is_ethernet(&self) -> bool {
        self.linktype == LINKTYPE_ETHERNET
    }

    /// The protocol for sockaddr_ll (the kernel sets skb->protocol from it).
    fn protocol(&self) -> u16 {
        if self.is_ethernet() {
            let etype = u16::from_be_bytes([self.data[12], self.data[13]]);
            // Below 0x0600 the field is an 802.3 length, not a type.
            if etype >= 0x0600 {
                etype
            } else {
                ETH_P_802_3
            }
        } else if self.data[0] >> 4 == 6 {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        }
    }
}

/// Reads every packet of a pcap or pcapng file, checking each; the error
/// says what is wrong and at which byte.
pub fn parse_capture(data: &[u8]) -> Result<Vec<Packet<'_>>, String> {
    let packets = match data.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => parse_pcapng(data)?,
        Some(m)
            if [0xa1b2c3d4u32, 0xa1b23c4d]
                .iter()
                .any(|magic| m == magic.to_be_bytes() || m == magic.to_le_bytes()) =>
        {
            parse_pcap(data)?
        }
        _ => {
            let shown: Vec<String> = data.iter().take(4).map(|b| format!("{b:02x}")).collect();
            return Err(format!(
                "not a pcap or pcapng file (starts with {})",
                if shown.is_empty() {
                    "nothing: it is empty".to_string()
                } else {
                    shown.join(" ")
                }
            ));
        }
    };
    for (n, p) in packets.iter().enumerate() {
        check_packet(p).map_err(|e| format!("packet {} (byte {}): {e}", n + 1, p.offset))?;
    }
    Ok(packets)
}

fn check_packet(p: &Packet<'_>) -> Result<(), String> {
    match p.linktype {
        LINKTYPE_ETHERNET if p.data.len() < 14 => Err(format!(
            "an Ethernet frame of {} bytes (at least 14)",
            p.data.len()
        )),
        LINKTYPE_ETHERNET => Ok(()),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            let version = p.data.first().map(|b| b >> 4);
            let fits = match p.linktype {
                LINKTYPE_IPV4 => version == Some(4),
                LINKTYPE_IPV6 => version == Some(6),
                _ => matches!(version, Some(4 | 6)),
            };
            if fits {
                Ok(())
            } else {
                Err(format!(
                    "link type {} but not an IP packet of that version ({} bytes{})",
                    p.linktype,
                    p.data.len(),
                    version
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                ))
            }
        }
        other => Err(format!(
            "link type {other} is not supported (1 Ethernet, 101 raw IP, 228 IPv4, 229 IPv6)"
        )),
    }
}

fn parse_pcap(data: &[u8]) -> Result<Vec<Packet<'_>>, String> {
    let (mut rest, parser) = PcapParser::new(data).map_err(|e| match e {
        PcapError::IncompleteBuffer => {
            format!("truncated pcap file header ({} of 24 bytes)", data.len())
        }
        e => format!("bad pcap file header: {e}"),
    })?;
    let linktype = u32::from(parser.header().datalink);
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        // Raw records: the original tool wrote snaplen 0, which pcap-file's
        // checked records reject; lengths are checked against the file here.
        let (next, record) = parser.next_raw_packet(rest).map_err(|e| match e {
            PcapError::IncompleteBuffer if rest.len() < 16 => format!(
                "record {} at byte {offset}: truncated header ({} of 16 bytes)",
                packets.len() + 1,
                rest.len()
            ),
            PcapError::IncompleteBuffer => format!(
                "record {} at byte {offset}: truncated ({} bytes of data announced, {} left)",
                packets.len() + 1,
                u32_at(rest, 8, parser.header().endianness),
                rest.len() - 16
            ),
            e => format!("record {} at byte {offset}: {e}", packets.len() + 1),
        })?;
        // The parser borrows from its input; an owned copy never comes back.
        let std::borrow::Cow::Borrowed(slice) = record.data else {
            return Err(format!(
                "record {} at byte {offset}: unreadable",
                packets.len() + 1
            ));
        };
        packets.push(Packet {
            linktype,
            data: slice,
            offset,
        });
        rest = next;
    }
    Ok(packets)
}

fn u32_at(data: &[u8], at: usize, endianness: pcap_file::Endianness) -> u32 {
    let bytes: [u8; 4] = data[at..at + 4].try_into().unwrap_or_default();
    match endianness {
        pcap_file::Endianness::Big => u32::from_be_bytes(bytes),
        pcap_file::Endianness::Little => u32::from_le_bytes(bytes),
    }
}

fn parse_pcapng(data: &[u8]) -> Result<Vec<Packet<'_>>, String> {
    let describe = |e: PcapError, offset: usize, rest: &[u8]| match e {
        PcapError::IncompleteBuffer => {
            format!(
                "pcapng block at byte {offset}: truncated ({} bytes left)",
                rest.len()
            )
        }
        e => format!("pcapng block at byte {offset}: {e}"),
    };
    let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| describe(e, 0, data))?;
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        let (next, block) = parser
            .next_block(rest)
            .map_err(|e| describe(e, offset, rest))?;
        // Simple packet blocks belong to the first interface.
        let (interface, bytes, original_len) = match block {
            Block::EnhancedPacket(b) => (b.interface_id, b.data, b.original_len),
            Block::SimplePacket(b) => (0, b.data, b.original_len),
            Block::Packet(b) => (u32::from(b.interface_id), b.data, b.original_len),
            _ => {
                rest = next;
                continue;
            }
        };
        let Some(idb) = parser.interfaces().get(interface as usize) else {
            return Err(format!(
                "pcapng packet at byte {offset}: interface {interface} has no description block"
            ));
        };
        let linktype = u32::from(idb.linktype);
        let std::borrow::Cow::Borrowed(slice) = bytes else {
            return Err(format!("pcapng packet at byte {offset}: unreadable"));
        };
        // A simple packet block's data runs to the padding; its real length
        // is the original length (the spec's snaplen rule aside).
        let slice = &slice[..slice.len().min(original_len as usize)];
        packets.push(Packet {
            linktype,
            data: slice,
            offset,
        });
        rest = next;
    }
    Ok(packets)
}

/// Where the packets go.
enum Sink {
    /// The TAP's own fd: a write is a frame received on the interface.
    Tap(OwnedFd),
    /// An AF_PACKET socket: a frame sent on the interface.
    Packet { socket: OwnedFd, ifindex: i32 },
}

impl Sink {
    fn send(&self, packet: &Packet<'_>) -> std::io::Result<usize> {
        match self {
            Sink::Tap(fd) => nix::unistd::write(fd, packet.data).map_err(std::io::Error::from),
            Sink::Packet { socket, ifindex } => {
                // SAFETY: sockaddr_ll is plain old data; zeroed is valid.
                let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = packet.protocol().to_be();
                addr.sll_ifindex = *ifindex;
                // SAFETY: the buffer and the address live for the call, and
                // the lengths given are theirs.
                let n = unsafe {
                    libc::sendto(
                        socket.as_raw_fd(),
                        packet.data.as_ptr().cast(),
                        packet.data.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }
        }
    }
}

fn packet_socket() -> std::io::Result<OwnedFd> {
    // Protocol 0: the socket sends and never receives.
    // SAFETY: plain syscall; the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            // Non-blocking: the send loop is async and retries on EAGAIN.
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether frames of `linktype` can go to an interface of type `arphrd`.
fn fits_interface(name: &str, arphrd: u16, packet: &Packet<'_>, file: &str) -> anyhow::Result<()> {
    let ethernet_dev = matches!(arphrd, ARPHRD_ETHER | ARPHRD_LOOPBACK);
    let bare_dev = matches!(
        arphrd,
        ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT
    );
    match (packet.is_ethernet(), ethernet_dev, bare_dev) {
        (true, true, _) | (false, _, true) => Ok(()),
        (false, true, _) => Err(anyhow!(
            "{name} is an Ethernet interface but {file} holds raw IP packets (link type {}): \
             they need an interface without a link header (e.g. a TUN)",
            packet.linktype
        )),
        (true, false, true) => Err(anyhow!(
            "{name} has no Ethernet header (ARPHRD type {arphrd}) but {file} holds Ethernet frames"
        )),
        _ => Err(anyhow!(
            "{name}: interfaces of ARPHRD type {arphrd} are not supported (Ethernet or no link header)"
        )),
    }
}

fn inject(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args = parse(args)?;
    let interval = args.interval;
    let (file, name) = (&args.file, &args.iface);
    let data = std::fs::read(file).map_err(|e| anyhow!("{file}: {}", crate::util::io_error(&e)))?;
    let packets = parse_capture(&data).map_err(|e| anyhow!("{file}: {e}"))?;

    let state = ctx.state();
    let tap = state
        .taps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .map(|fd| fd.try_clone_to_owned())
        .transpose()
        .map_err(|e| anyhow!("{name}: {}", crate::util::io_error(&e)))?;
    let index = iface::ifindex(name).map_err(|_| {
        if tap.is_some() {
            anyhow!("{name}: the TAP was removed (ip link del?); `tap del {name}` forgets it")
        } else {
            anyhow!("{name}: no such interface")
        }
    })?;
    let arphrd = ctx.block_on(async {
        let nl = Netlink::open()?;
        anyhow::Ok(nl.link(index).await?.link_type)
    })??;
    for p in &packets {
        fits_interface(name, arphrd, p, file)?;
    }
    let sink = match tap {
        Some(fd) => Sink::Tap(fd),
        None => Sink::Packet {
            socket: packet_socket()
                .map_err(|e| anyhow!("AF_PACKET socket: {}", crate::util::io_error(&e)))?,
            ifindex: index as i32,
        },
    };

    let total = if packets.is_empty() {
        0
    } else {
        args.count.unwrap_or(packets.len() as u64)
    };
    let mut interrupts = ctx.interrupts();
    let (sent, result) = ctx.block_on_uninterrupted(async {
        let mut sent = 0u64;
        for (n, packet) in packets.iter().cycle().take(total as usize).enumerate() {
            if n > 0 && !interval.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = interrupts.changed() => return (sent, Err(Interrupted.into())),
                }
            }
            if interrupts.has_changed().unwrap_or(false) {
                return (sent, Err(Interrupted.into()));
            }
            loop {
                match sink.send(packet) {
                    Ok(_) => break,
                    // A full queue: wait a moment and send the packet again.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                            _ = interrupts.changed() => return (sent, Err(Interrupted.into())),
                        }
                    }
                    Err(e) => {
                        let hint = match e.raw_os_error() {
                            Some(libc::EIO) if matches!(sink, Sink::Tap(_)) => {
                                format!(" (is {name} up?)")
                            }
                            Some(libc::ENETDOWN) => format!(" (is {name} up?)"),
                            Some(libc::EMSGSIZE) => " (larger than the MTU?)".to_string(),
                            _ => String::new(),
                        };
                        return (
                            sent,
                            Err(anyhow!(
                                "packet {} of {file} (byte {}, {} bytes): {name}: {}{hint}",
                                n % packets.len() + 1,
                                packet.offset,
                                packet.data.len(),
                                crate::util::io_error(&e)
                            )),
                        );
                    }
                }
            }
            sent += 1;
        }
        (sent, Ok(()))
    });
    writeln!(ctx.out, "inject: {sent} packets from {file} to {name}")?;
    result?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(magic: u32, big_endian: bool, linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend(u32b(magic));
        out.extend(u16b(2));
        out.extend(u16b(4));
        out.extend([0; 8]);
        out.extend(u32b(65535));
        out.extend(u32b(linktype));
        for f in frames {
            out.extend(u32b(1_700_000_000));
            out.extend(u32b(5));
            out.extend(u32b(f.len() as u32));
            out.extend(u32b(f.len() as u32));
            out.extend(*f);
        }
        out
    }

    fn pcapng(linktype: u16, frames: &[&[u8]]) -> Vec<u8> {
        let block = |kind: u32, body: Vec<u8>| {
            let len = 12 + body.len() as u32;
            let mut b = kind.to_le_bytes().to_vec();
            b.extend(len.to_le_bytes());
            b.extend(body);
            b.extend(len.to_le_bytes());
            b
        };
        let mut shb = 0x1a2b3c4du32.to_le_bytes().to_vec();
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes());
        let mut out = block(0x0a0d0d0a, shb);
        let mut idb = linktype.to_le_bytes().to_vec();
        idb.extend([0, 0]);
        idb.extend(0u32.to_le_bytes());
        out.extend(block(1, idb));
        for f in frames {
            let mut epb = 0u32.to_le_bytes().to_vec();
            epb.extend([0; 8]);
            epb.extend((f.len() as u32).to_le_bytes());
            epb.extend((f.len() as u32).to_le_bytes());
            epb.extend(*f);
            epb.resize(epb.len().div_ceil(4) * 4, 0);
            out.extend(block(6, epb));
        }
        out
    }

    const ETH: &[u8] = &[
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, 0, 20,
    ];
    const IP4: &[u8] = &[
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];

    #[test]
    fn reads_both_magics_in_both_byte_orders() {
        for magic in [0xa1b2c3d4, 0xa1b23c4d] {
            for big in [false, true] {
                let file = pcap(magic, big, 1, &[ETH, &ETH[..14]]);
                let packets = parse_capture(&file).unwrap();
                assert_eq!(packets.len(), 2, "{magic:x} {big}");
                assert_eq!(packets[0].data, ETH);
                assert_eq!(packets[0].offset, 24);
                assert_eq!(packets[1].offset, 24 + 16 + ETH.len());
                assert_eq!(packets[1].protocol(), ETH_P_IP);
            }
        }
    }

    #[test]
    fn reads_pcapng_and_raw_ip() {
        let ng = pcapng(101, &[IP4, IP4]);
        let packets = parse_capture(&ng).unwrap();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[1].data, IP4);
        assert_eq!(packets[1].linktype, 101);
        assert_eq!(packets[1].protocol(), ETH_P_IP);
        let file = pcap(0xa1b2c3d4, false, 228, &[IP4]);
        let v4 = parse_capture(&file).unwrap();
        assert_eq!(v4[0].linktype, 228);
    }

    #[test]
    fn the_original_snaplen_zero_is_accepted() {
        let mut file = pcap(0xa1b2c3d4, false, 1, &[ETH]);
        file[16..20].copy_from_slice(&[0; 4]);
        assert_eq!(parse_capture(&file).unwrap().len(), 1);
    }

    #[test]
    fn bad_files_are_reported_with_the_offset() {
        assert!(parse_capture(b"")
            .unwrap_err()
            .contains("not a pcap or pcapng file"));
        assert!(parse_capture(b"hello world, not a capture")
            .unwrap_err()
            .contains("starts with 68 65 6c 6c"));
        let file = pcap(0xa1b2c3d4, false, 1, &[ETH, ETH]);
        let err = parse_capture(&file[..file.len() - 3]).unwrap_err();
        assert!(err.contains("record 2 at byte 58: truncated"), "{err}");
        let err = parse_capture(&file[..24 + 16 + ETH.len() + 5]).unwrap_err();
        assert!(
            err.contains("record 2 at byte 58: truncated header"),
            "{err}"
        );
        let err = parse_capture(&file[..10]).unwrap_err();
        assert!(err.contains("truncated pcap file header"), "{err}");
        let ng = pcapng(1, &[ETH]);
        let err = parse_capture(&ng[..ng.len() - 4]).unwrap_err();
        assert!(err.contains("pcapng block at byte"), "{err}");
        let err = parse_capture(&pcap(0xa1b2c3d4, false, 105, &[ETH])).unwrap_err();
        assert!(err.contains("packet 1 (byte 24): link type 105"), "{err}");
        let err = parse_capture(&pcap(0xa1b2c3d4, false, 1, &[&ETH[..10]])).unwrap_err();
        assert!(err.contains("Ethernet frame of 10 bytes"), "{err}");
        let err = parse_capture(&pcap(0xa1b2c3d4, false, 229, &[IP4])).unwrap_err();
        assert!(err.contains("not an IP packet of that version"), "{err}");
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn arguments_in_any_order_with_either_option_form() {
        let a = parse(&words("--count=3 f.pcap tap0 --interval 0.5")).unwrap();
        assert_eq!((a.file.as_str(), a.iface.as_str()), ("f.pcap", "tap0"));
        assert_eq!(a.count, Some(3));
        assert_eq!(a.interval, Duration::from_millis(500));
        let a = parse(&words("-- --odd-file tap0")).unwrap();
        assert_eq!((a.file.as_str(), a.count), ("--odd-file", None));
        for (line, message) in [
            ("", "missing FILE and IF"),
            ("f", "missing IF"),
            ("f i j", "unexpected argument 'j'"),
            ("f i --count", "--count needs a value"),
            ("f i --count -1", "--count: not a number: -1"),
            ("f i --count 0", "--count must be at least 1"),
            ("f i --interval x", "not a number of seconds: x"),
            ("f i --fast", "unknown option --fast"),
        ] {
            let e = parse(&words(line)).err().unwrap();
            assert!(e.is::<crate::cmd::UsageError>(), "{line}");
            assert_eq!(e.to_string(), message, "{line}");
        }
    }

    #[test]
    fn damaged_files_never_panic() {
        for file in [
            pcap(0xa1b2c3d4, false, 1, &[ETH, ETH]),
            pcap(0xa1b23c4d, true, 101, &[IP4]),
            pcapng(1, &[ETH, ETH]),
        ] {
            for cut in 0..file.len() {
                let _ = parse_capture(&file[..cut]);
            }
            for at in 0..file.len() {
                for value in [0x00, 0xff, 0x7f, 0x80] {
                    let mut damaged = file.clone();
                    damaged[at] = value;
                    let _ = parse_capture(&damaged);
                }
            }
        }
    }
}
