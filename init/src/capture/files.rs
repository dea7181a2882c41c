//! The capture's output file: classic pcap (µs, or ns with `--ns`),
//! pcapng (the interface's name and link type in its IDB, direction in
//! `epb_flags`, the sending process in the packet comment, statistics in
//! an ISB at the end) or JSONL (packet::jsonl: the original's dialect, or
//! ours with `jsonl+`), all through buffered writes; `finish` flushes, so
//! a full disk is an error, not a short file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::packet::jsonl;
use crate::packet::layers::{self, Dialect};
use crate::packet::pcap::Direction;
use crate::packet::pcap_writer::{PcapNgWriter, PcapWriter, TsResolution};

/// Bytes buffered before a write reaches the file: large enough that a
/// flood costs few syscalls, small enough to be flushed every idle turn.
const BUFFER: usize = 256 << 10;

/// The file under the buffer, counting the bytes it took, so that after a
/// failed write the capture knows which packets are wholly in the file.
struct CountingFile {
    file: File,
    written: Arc<AtomicU64>,
    /// Set once the file was cut back after an error: what is still
    /// buffered is dropped, not written past the cut.
    discard: bool,
}

impl Write for CountingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.discard {
            return Ok(buf.len());
        }
        let n = self.file.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

type Buffered = BufWriter<CountingFile>;

/// The file formats `capture start` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
    /// JSONL in a dialect: `jsonl` the original's, `jsonl+` ours.
    Jsonl(Dialect),
}

impl Format {
    /// The format keyword of `capture start IF FILE [jsonl|jsonl+|pcap|pcapng]`.
    pub fn parse(word: &str) -> Option<Format> {
        match word {
            "pcap" => Some(Format::Pcap),
            "pcapng" => Some(Format::PcapNg),
            "jsonl" => Some(Format::Jsonl(Dialect::Original)),
            "jsonl+" => Some(Format::Jsonl(Dialect::Full)),
            _ => None,
        }
    }

    /// The format a file name's extension names (`.pcap`, `.pcapng`,
    /// `.jsonl`, `.json`).
    pub fn from_path(path: &str) -> Option<Format> {
        match Path::new(path).extension()?.to_str()? {
            "pcap" | "cap" => Some(Format::Pcap),
            "pcapng" => Some(Format::PcapNg),
            "jsonl" | "json" => Some(Format::Jsonl(Dialect::Original)),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
            Format::Jsonl(Dialect::Original) => "jsonl",
            Format::Jsonl(Dialect::Full) => "jsonl+",
        }
    }
}

/// One captured packet as the backends hand it over.
pub struct Captured<'a> {
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// Its first bytes, up to the snap length.
    pub data: &'a [u8],
    pub direction: Direction,
    /// The sending process, where the kernel said which (eBPF egress).
    pub process: Option<(u32, &'a str)>,
}

enum Out {
    Pcap(PcapWriter<Buffered>),
    PcapNg(PcapNgWriter<Buffered>),
    Jsonl(Buffered, Dialect),
}

impl Out {
    fn buffered(&self) -> usize {
        match self {
            Out::Pcap(w) => w.get_ref().buffer().len(),
            Out::PcapNg(w) => w.get_ref().buffer().len(),
            Out::Jsonl(w, _) => w.buffer().len(),
        }
    }
}

/// An open capture file.
pub struct CaptureFile {
    out: Out,
    ifname: String,
    linktype: u32,
    /// Bytes the file took.
    written: Arc<AtomicU64>,
    /// Packets not yet wholly in the file: where each ends in it, and its
    /// captured length. Bounded by the buffer (a record is at least 16 bytes).
    pending: VecDeque<(u64, u64)>,
    /// Packets (and their captured bytes) wholly in the file.
    kept: u64,
    kept_bytes: u64,
    /// Where the last packet wholly in the file ends (or the header).
    kept_end: u64,
    /// The bytes the file had taken at the last `settle`.
    settled_at: u64,
}

/// The packet comment naming the sender: `ping (pid 42)`.
pub fn process_comment(tgid: u32, comm: &str) -> String {
    format!("{comm} (pid {tgid})")
}

impl CaptureFile {
    /// Creates (or truncates) `path` and writes the format's header.
    pub fn create(
        path: &str,
        format: Format,
        ifname: &str,
        linktype: u32,
        ns: bool,
        snaplen: u32,
    ) -> io::Result<Self> {
        let written = Arc::new(AtomicU64::new(0));
        let file = BufWriter::with_capacity(
            BUFFER,
            CountingFile {
                file: File::create(path)?,
                written: written.clone(),
                discard: false,
            },
        );
        let out = match format {
            Format::Pcap => {
                let resolution = if ns {
                    TsResolution::NanoSecond
                } else {
                    TsResolution::MicroSecond
                };
                Out::Pcap(PcapWriter::with_snaplen(
                    file, linktype, resolution, snaplen,
                )?)
            }
            Format::PcapNg => {
                let mut w = PcapNgWriter::new(file)?;
                w.add_interface_with_snaplen(ifname, linktype, snaplen)?;
                Out::PcapNg(w)
            }
            Format::Jsonl(dialect) => Out::Jsonl(file, dialect),
        };
        // The header (still buffered) is what a cut keeps at the least.
        let kept_end = out.buffered() as u64;
        Ok(CaptureFile {
            out,
            kept_end,
            ifname: ifname.to_string(),
            linktype,
            written,
            pending: VecDeque::new(),
            settled_at: 0,
            kept: 0,
            kept_bytes: 0,
        })
    }

    /// Moves the packets the file now holds from pending to kept.
    fn settle(&mut self) {
        let on_disk = self.written.load(Ordering::Relaxed);
        // Most packets only fill the buffer: nothing reached the file.
        if on_disk == self.settled_at {
            return;
        }
        self.settled_at = on_disk;
        while let Some(&(end, len)) = self.pending.front() {
            if end > on_disk {
                break;
            }
            self.pending.pop_front();
            self.kept += 1;
            self.kept_bytes += len;
            self.kept_end = end;
        }
    }

    /// Appends one packet.
    pub fn write(&mut self, p: &Captured<'_>) -> io::Result<()> {
        let result = self.write_record(p);
        if result.is_ok() {
            let end = self.written.load(Ordering::Relaxed) + self.out.buffered() as u64;
            self.pending.push_back((end, p.data.len() as u64));
        }
        self.settle();
        result
    }

    fn write_record(&mut self, p: &Captured<'_>) -> io::Result<()> {
        match &mut self.out {
            Out::Pcap(w) => w.write(p.timestamp_ns, p.orig_len, p.data),
            Out::PcapNg(w) => {
                let comment = p.process.map(|(tgid, comm)| process_comment(tgid, comm));
                w.write(
                    0,
                    p.timestamp_ns,
                    p.orig_len,
                    p.data,
                    Some(p.direction),
                    comment.as_deref(),
                )
            }
            Out::Jsonl(w, dialect) => {
                let record = jsonl::Record {
                    timestamp_ns: p.timestamp_ns,
                    direction: Some(match p.direction {
                        Direction::Inbound => jsonl::Direction::Rx,
                        Direction::Outbound => jsonl::Direction::Tx,
                    }),
                    ifname: Some(self.ifname.clone()),
                    linktype: self.linktype,
                    packet: layers::decode(*dialect, self.linktype, p.data),
                    comment: p.process.map(|(tgid, comm)| process_comment(tgid, comm)),
                };
                jsonl::write_record(w, &record, *dialect)
            }
        }
    }

    /// Pushes what is buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = match &mut self.out {
            Out::Pcap(w) => w.flush(),
            Out::PcapNg(w) => w.flush(),
            Out::Jsonl(w, _) => w.flush(),
        };
        self.settle();
        result
    }

    /// Ends the file: pcapng gets its statistics block (`received` packets
    /// seen by the capture, `dropped` of them not kept), then everything is
    /// flushed and the file closed. Gives the packets and bytes wholly in
    /// the file, whether closing worked or not.
    pub fn finish(
        mut self,
        end_ns: u64,
        received: u64,
        dropped: u64,
    ) -> (u64, u64, io::Result<()>) {
        let result = match &mut self.out {
            Out::PcapNg(w) => w.write_statistics(0, end_ns, received, dropped),
            _ => Ok(()),
        }
        .and_then(|()| self.flush());
        self.settle();
        if result.is_err() || !self.pending.is_empty() {
            self.cut_to_whole_packets();
        }
        (self.kept, self.kept_bytes, result)
    }

    /// After a failed write (a full disk): the file ends with the last
    /// packet wholly in it, not with part of the next, so every reader
    /// takes it as it is; what is still buffered is dropped.
    fn cut_to_whole_packets(&mut self) {
        let inner = match &mut self.out {
            Out::Pcap(w) => w.get_mut().get_mut(),
            Out::PcapNg(w) => w.get_mut().get_mut(),
            Out::Jsonl(w, _) => w.get_mut(),
        };
        inner.discard = true;
        let on_disk = self.written.load(Ordering::Relaxed);
        let _ = inner.file.set_len(self.kept_end.min(on_disk));
    }
}
