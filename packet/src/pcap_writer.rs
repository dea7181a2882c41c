//! Writers of classic pcap (µs or ns) and pcapng files, through pcap-file.
//! Both write into any `Write` (give them a `BufWriter`); `finish` flushes
//! and returns it, so a failed last write is an error, not a lost packet.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use byteorder_slice::LittleEndian;
use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::{DataLink, Endianness, PcapError};

pub use pcap_file::TsResolution;

use super::pcap::{Direction, MAX_RECORD_DATA};

/// The snaplen both writers announce: what our reader accepts.
const SNAPLEN: u32 = MAX_RECORD_DATA as u32;

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
    }
}

/// Keeps `data` within the snaplen and the original length at least as
/// long as what is kept (as a capture would).
fn clip(original_len: u32, data: &[u8]) -> (u32, &[u8]) {
    let kept = &data[..data.len().min(SNAPLEN as usize)];
    (original_len.max(kept.len() as u32), kept)
}

/// A pcapng timestamp as pcap-file's ISB writes it: the format puts the
/// high 32 bits first, each half in the section's byte order, but
/// pcap-file writes the field as one little-endian u64 (low half first),
/// so the halves are swapped here to come out in the right order.
fn pcapng_timestamp(ns: u64) -> u64 {
    ns.rotate_left(32)
}

fn timestamp(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

/// A classic pcap file: one link type, µs or ns timestamps (the magic
/// says which), little-endian.
pub struct PcapWriter<W: Write> {
    out: W,
    resolution: TsResolution,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(out: W, linktype: u32, resolution: TsResolution) -> io::Result<Self> {
        Self::with_snaplen(out, linktype, resolution, SNAPLEN)
    }

    /// `new` with the snap length the header announces (a capture's
    /// `--snaplen`, as tcpdump -s writes it).
    pub fn with_snaplen(
        mut out: W,
        linktype: u32,
        resolution: TsResolution,
        snaplen: u32,
    ) -> io::Result<Self> {
        let header = PcapHeader {
            snaplen: snaplen.min(SNAPLEN),
            datalink: DataLink::from(linktype),
            ts_resolution: resolution,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        header.write_to(&mut out).map_err(io_error)?;
        Ok(PcapWriter { out, resolution })
    }

    /// Writes one packet; `timestamp_ns` is ns since the epoch (cut to µs
    /// in a µs file).
    pub fn write(&mut self, timestamp_ns: u64, original_len: u32, data: &[u8]) -> io::Result<()> {
        let (original_len, data) = clip(original_len, data);
        // pcap-file's own writer owns its output and cannot flush it, so
        // its record writer is used on ours.
        PcapPacket::new(timestamp(timestamp_ns), original_len, data)
            .write_to::<_, LittleEndian>(&mut self.out, self.resolution, SNAPLEN)
            .map_err(io_error)?;
        Ok(())
    }

    /// Pushes what is buffered to the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The output, to see what it holds.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The output, to act on it (a capture cuts its file after an error).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes and hands back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A pcapng file: a section, interfaces (name, link type, ns timestamps)
/// and enhanced packet blocks with direction and comment.
pub struct PcapNgWriter<W: Write> {
    inner: pcap_file::pcapng::PcapNgWriter<W>,
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header block.
    pub fn new(out: W) -> io::Result<Self> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                "myinit",
            ))],
            ..SectionHeaderBlock::default()
        };
        let inner =
            pcap_file::pcapng::PcapNgWriter::with_section_header(out, section).map_err(io_error)?;
        Ok(PcapNgWriter { inner })
    }

    /// Describes an interface; its packets name it by the id returned.
    pub fn add_interface(&mut self, name: &str, linktype: u32) -> io::Result<u32> {
        self.describe_interface(Some(name), linktype)
    }

    /// `add_interface` with the snap length its block announces.
    pub fn add_interface_with_snaplen(
        &mut self,
        name: &str,
        linktype: u32,
        snaplen: u32,
    ) -> io::Result<u32> {
        self.interface_block(Some(name), linktype, snaplen.min(SNAPLEN))
    }

    /// `add_interface`, for packets whose interface has no known name
    /// (json2pcap of lines without `ifname`): no `if_name` option.
    pub fn describe_interface(&mut self, name: Option<&str>, linktype: u32) -> io::Result<u32> {
        self.interface_block(name, linktype, SNAPLEN)
    }

    fn interface_block(
        &mut self,
        name: Option<&str>,
        linktype: u32,
        snaplen: u32,
    ) -> io::Result<u32> {
        let id = self.inner.interfaces().len() as u32;
        let mut options = Vec::new();
        if let Some(name) = name {
            options.push(InterfaceDescriptionOption::IfName(Cow::Owned(
                name.to_string(),
            )));
        }
        // pcap-file writes packet timestamps in ns whatever the interface
        // says, so the interface must say ns.
        options.push(InterfaceDescriptionOption::IfTsResol(9));
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::from(linktype),
            snaplen,
            options,
        };
        self.inner.write_pcapng_block(idb).map_err(io_error)?;
        Ok(id)
    }

    /// Writes one packet of interface `interface` (from `add_interface`).
    pub fn write(
        &mut self,
        interface: u32,
        timestamp_ns: u64,
        original_len: u32,
        data: &[u8],
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let (original_len, data) = clip(original_len, data);
        let mut options = Vec::new();
        if let Some(comment) = comment {
            options.push(EnhancedPacketOption::Comment(Cow::Borrowed(comment)));
        }
        if let Some(direction) = direction {
            options.push(EnhancedPacketOption::Flags(direction.epb_flags()));
        }
        let epb = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: timestamp(timestamp_ns),
            original_len,
            data: Cow::Borrowed(data),
            options,
        };
        self.inner.write_pcapng_block(epb).map_err(io_error)?;
        Ok(())
    }

    /// Writes an Interface Statistics Block for `interface`: packets the
    /// interface received (`isb_ifrecv`) and the capture could not keep
    /// (`isb_ifdrop`), as of `timestamp_ns`.
    pub fn write_statistics(
        &mut self,
        interface: u32,
        timestamp_ns: u64,
        received: u64,
        dropped: u64,
    ) -> io::Result<()> {
        let isb = InterfaceStatisticsBlock {
            interface_id: interface,
            timestamp: pcapng_timestamp(timestamp_ns),
            options: vec![
                InterfaceStatisticsOption::IsbIfRecv(received),
                InterfaceStatisticsOption::IsbIfDrop(dropped),
            ],
        };
        self.inner.write_pcapng_block(isb).map_err(io_error)?;
        Ok(())
    }

    /// Pushes what is buffered to the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.get_mut().flush()
    }

    /// The output, to see what it holds.
    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }

    /// The output, to act on it (a capture cuts its file after an error).
    pub fn get_mut(&mut self) -> &mut W {
        self.inner.get_mut()
    }

    /// Flushes and hands back the output.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.inner.into_inner();
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::BufWriter;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::linktype::{LINKTYPE_ETHERNET, LINKTYPE_RAW};
    use crate::pcap::PacketReader;

    /// A directory of this test's files, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("myinit-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs a reference tool (tcpdump, tshark, editcap); its stdout, or a
    /// panic that says how to install it.
    fn tool(program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install tcpdump tshark)"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// Ethernet / IPv4 / UDP with a 4-byte payload.
    fn udp_frame(sport: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(sport, 2000)
            .write(&mut frame, b"ping")
            .unwrap();
        frame
    }

    /// The same packet without its Ethernet header.
    fn udp_ip(sport: u16) -> Vec<u8> {
        udp_frame(sport)[14..].to_vec()
    }

    const TS: [u64; 2] = [1_761_596_197_426_295_123, 1_761_596_198_000_001_999];

    #[test]
    fn pcap_files_in_us_and_ns_read_in_tcpdump_and_tshark() {
        let dir = TempDir::new("pcapw");
        for (resolution, stamps) in [
            (
                TsResolution::MicroSecond,
                ["1761596197.426295000", "1761596198.000001000"],
            ),
            (
                TsResolution::NanoSecond,
                ["1761596197.426295123", "1761596198.000001999"],
            ),
        ] {
            let file = dir.0.join(format!("{resolution:?}.pcap"));
            let out = BufWriter::new(File::create(&file).unwrap());
            let mut w = PcapWriter::new(out, LINKTYPE_ETHERNET, resolution).unwrap();
            for (i, ts) in TS.iter().enumerate() {
                let frame = udp_frame(1000 + i as u16);
                w.write(*ts, frame.len() as u32, &frame).unwrap();
            }
            // What flush pushed is readable while the writer still lives.
            w.flush().unwrap();
            let text = tool(
                "tcpdump",
                &[
                    "--time-stamp-precision=nano",
                    "-r",
                    path(&file),
                    "-nn",
                    "-tt",
                ],
            );
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text}");
            for (i, line) in lines.iter().enumerate() {
                let want = format!(
                    "{} IP 10.0.0.1.{} > 10.0.0.2.2000: UDP, length 4",
                    stamps[i],
                    1000 + i
                );
                assert_eq!(*line, want, "{resolution:?}");
            }
            w.finish().unwrap();
            let text = tool(
                "tshark",
                &[
                    "-r",
                    path(&file),
                    "-T",
                    "fields",
                    "-e",
                    "frame.time_epoch",
                    "-e",
                    "frame.encap_type",
                    "-e",
                    "udp.srcport",
                ],
            );
            assert_eq!(
                text,
                format!("{}\t1\t1000\n{}\t1\t1001\n", stamps[0], stamps[1]),
                "{resolution:?}"
            );
        }
    }

    #[test]
    fn pcapng_files_show_interfaces_directions_and_comments_in_tshark() {
        let dir = TempDir::new("pcapngw");
        let file = dir.0.join("two.pcapng");
        let out = BufWriter::new(File::create(&file).unwrap());
        let mut w = PcapNgWriter::new(out).unwrap();
        let veth = w.add_interface("veth0", LINKTYPE_ETHERNET).unwrap();
        let tun = w.add_interface("tun0", LINKTYPE_RAW).unwrap();
        let frame = udp_frame(1000);
        let packet = udp_ip(1001);
        let writes = [
            (
                veth,
                TS[0],
                &frame,
                Some(Direction::Inbound),
                Some("first one"),
            ),
            (tun, TS[1], &packet, Some(Direction::Outbound), None),
            (veth, TS[1], &frame, None, Some("no direction")),
        ];
        for (interface, ts, data, direction, comment) in writes {
            w.write(interface, ts, data.len() as u32, data, direction, comment)
                .unwrap();
        }
        w.finish().unwrap();
        let text = tool(
            "tshark",
            &[
                "-r",
                path(&file),
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.interface_name",
                "-e",
                "frame.packet_flags_direction",
                "-e",
                "frame.comment",
                "-e",
                "frame.encap_type",
                "-e",
                "udp.srcport",
            ],
        );
        // Direction: 1 inbound, 2 outbound (absent: no flags option).
        // Encapsulation 1 is Ethernet, 7 raw IP.
        assert_eq!(
            text,
            "1761596197.426295123|veth0|0x00000001|first one|1|1000\n\
             1761596198.000001999|tun0|0x00000002||7|1001\n\
             1761596198.000001999|veth0||no direction|1|1000\n",
        );
        // tcpdump (libpcap) reads a pcapng of one link type.
        let single = dir.0.join("one.pcapng");
        let mut w = PcapNgWriter::new(BufWriter::new(File::create(&single).unwrap())).unwrap();
        let lo = w.add_interface("lo", LINKTYPE_ETHERNET).unwrap();
        w.write(
            lo,
            TS[0],
            frame.len() as u32,
            &frame,
            Some(Direction::Outbound),
            None,
        )
        .unwrap();
        w.flush().unwrap();
        drop(w);
        let text = tool(
            "tcpdump",
            &[
                "--time-stamp-precision=nano",
                "-r",
                path(&single),
                "-nn",
                "-tt",
            ],
        );
        assert_eq!(
            text,
            "1761596197.426295123 IP 10.0.0.1.1000 > 10.0.0.2.2000: UDP, length 4\n"
        );
    }

    #[test]
    fn pcapng_statistics_block_says_received_and_dropped_with_its_time_high_word_first() {
        let dir = TempDir::new("isb");
        let file = dir.0.join("isb.pcapng");
        let mut w = PcapNgWriter::new(BufWriter::new(File::create(&file).unwrap())).unwrap();
        let veth = w.add_interface("veth0", LINKTYPE_ETHERNET).unwrap();
        let frame = udp_frame(1000);
        w.write(veth, TS[0], frame.len() as u32, &frame, None, None)
            .unwrap();
        w.write_statistics(veth, TS[1], 7, 6).unwrap();
        w.finish().unwrap();
        let info = tool("capinfos", &[path(&file)]);
        assert!(info.contains("Number of stat entries = 1"), "{info}");
        // The last block: type 5, interface 0, the timestamp's high then
        // low 32 bits, isb_ifrecv (4) = 7, isb_ifdrop (5) = 6, end of options.
        let bytes = std::fs::read(&file).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32_at(bytes.len() - 4) as usize;
        let isb = bytes.len() - len;
        assert_eq!(u32_at(isb), 5);
        assert_eq!(u32_at(isb + 8), veth);
        assert_eq!(u32_at(isb + 12), (TS[1] >> 32) as u32);
        assert_eq!(u32_at(isb + 16), TS[1] as u32);
        assert_eq!((u32_at(isb + 20), u32_at(isb + 24)), (8 << 16 | 4, 7));
        assert_eq!((u32_at(isb + 32), u32_at(isb + 36)), (8 << 16 | 5, 6));
        assert_eq!(u32_at(isb + 44), 0);
    }

    #[test]
    fn pcapng_written_by_tshark_reads_with_its_us_timestamps() {
        let dir = TempDir::new("tsharkng");
        let pcap = dir.0.join("in.pcap");
        let mut w = PcapWriter::new(
            BufWriter::new(File::create(&pcap).unwrap()),
            LINKTYPE_ETHERNET,
            TsResolution::MicroSecond,
        )
        .unwrap();
        for (i, ts) in TS.iter().enumerate() {
            let frame = udp_frame(1000 + i as u16);
            w.write(*ts, frame.len() as u32, &frame).unwrap();
        }
        w.finish().unwrap();
        for (program, args) in [
            ("tshark", vec!["-F", "pcapng", "-r", path(&pcap), "-w"]),
            ("editcap", vec!["-F", "pcapng", path(&pcap)]),
        ] {
            let ng = dir.0.join(format!("{program}.pcapng"));
            let mut args = args.clone();
            args.push(path(&ng));
            tool(program, &args);
            let bytes = std::fs::read(&ng).unwrap();
            assert_eq!(
                &bytes[..4],
                &[0x0a, 0x0d, 0x0d, 0x0a],
                "{program} wrote pcapng"
            );
            let mut reader = PacketReader::new(&bytes[..]).unwrap();
            for (i, ts) in TS.iter().enumerate() {
                let r = reader.next_record().unwrap().unwrap();
                assert_eq!(r.timestamp_ns, ts / 1000 * 1000, "{program} packet {i}");
                assert_eq!(r.data, udp_frame(1000 + i as u16), "{program} packet {i}");
                assert_eq!(r.linktype, LINKTYPE_ETHERNET);
            }
            assert!(reader.next_record().unwrap().is_none());
        }
    }
}
