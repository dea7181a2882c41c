//! Packet files in and out, the same way for every command: the format
//! from the content, an input read twice without holding it in memory when
//! it is a regular file, and an output that replaces its file only when
//! whole.
//!
//! - `sniff`: JSONL, pcap (µs or ns) or pcapng, from the first bytes.
//! - `TwoPass`: a regular file is read again from its start; anything else
//!   (a FIFO, a device, stdin) cannot be, so its first pass keeps a copy of
//!   what it reads, up to `UNSEEKABLE_LIMIT` bytes.
//! - `AtomicFile`: OUT is written as `OUT.tmp` and renamed at `commit`; an
//!   error, a panic or Ctrl-C before that removes `OUT.tmp` and leaves OUT
//!   as it was. OUT that exists and is not a regular file (a FIFO,
//!   /dev/null), or is a kernel file (procfs, sysfs, tracefs: no file can
//!   be made beside it), is written directly. A replaced file keeps its
//!   permissions.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::io_error;

/// How much of an input that cannot be read twice is kept in memory.
pub const UNSEEKABLE_LIMIT: usize = 16 << 20;

/// The formats of packet files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Pcap { nanos: bool },
    PcapNg,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "JSONL",
            Format::Pcap { .. } => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// The format the first bytes of a file show: pcap and pcapng by their
/// magic numbers, JSONL when the first byte that is not white space opens
/// an object. None: neither (or not enough bytes to tell).
pub fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"\n\r\r\n") {
        return Some(Format::PcapNg);
    }
    if let Some(magic) = head.get(..4) {
        match u32::from_le_bytes(magic.try_into().unwrap_or_default()) {
            0xa1b2_c3d4 | 0xd4c3_b2a1 => return Some(Format::Pcap { nanos: false }),
            0xa1b2_3c4d | 0x4d3c_b2a1 => return Some(Format::Pcap { nanos: true }),
            _ => {}
        }
    }
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Some(Format::Jsonl),
        _ => None,
    }
}

/// An input read in two passes (or more).
pub enum TwoPass {
    /// A regular file: read again from its start.
    File(File),
    /// What the first pass read of anything else.
    Memory(Vec<u8>),
}

/// The first pass over input that cannot be read again: a reader that keeps
/// a copy of what it reads, failing past `UNSEEKABLE_LIMIT`.
pub struct Recording<R> {
    inner: R,
    copy: Vec<u8>,
    /// Said when the limit is passed ("copy it to a file first").
    advice: &'static str,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.copy.len() + n > UNSEEKABLE_LIMIT {
            return Err(io::Error::other(format!(
                "not a regular file, and longer than the {} MiB kept of such input ({})",
                UNSEEKABLE_LIMIT >> 20,
                self.advice
            )));
        }
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl TwoPass {
    /// Runs the first pass `pass` over `input` and keeps what is needed for
    /// the next ones. `advice` ends the error of an input too long to keep.
    pub fn first_pass<T>(
        input: File,
        advice: &'static str,
        pass: impl FnOnce(&mut dyn Read) -> T,
    ) -> (T, TwoPass) {
        if input.metadata().is_ok_and(|m| m.is_file()) {
            let mut reader = &input;
            let result = pass(&mut reader);
            return (result, TwoPass::File(input));
        }
        let mut recording = Recording {
            inner: input,
            copy: Vec::new(),
            advice,
        };
        let result = pass(&mut recording);
        (result, TwoPass::Memory(recording.copy))
    }

    /// A reader from the start, for the next pass.
    pub fn again(&self) -> io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(match self {
            TwoPass::File(file) => {
                // A second descriptor of the same open file: a rewind here
                // moves the first's offset too, which no one reads any more.
                let mut file = file.try_clone()?;
                file.rewind()?;
                Box::new(BufReader::with_capacity(256 << 10, file))
            }
            TwoPass::Memory(bytes) => Box::new(&bytes[..]),
        })
    }
}

/// Why an output file could not be written or put in place. Each names the
/// file; `io()` is the system's error alone, for a caller that names the
/// file its own way.
#[derive(Debug, Error)]
pub enum SaveError {
    #[error("{}: is a directory", .0.display())]
    IsADirectory(PathBuf),
    #[error("{}: {}", .path.display(), io_error(.error))]
    Open { path: PathBuf, error: io::Error },
    #[error("{}: {}: {}", .path.display(), .tmp.display(), io_error(.error))]
    Create {
        path: PathBuf,
        tmp: PathBuf,
        error: io::Error,
    },
    #[error("{}: renaming {} to it: {}", .path.display(), .tmp.display(), io_error(.error))]
    Rename {
        path: PathBuf,
        tmp: PathBuf,
        error: io::Error,
    },
}

impl SaveError {
    /// What went wrong without the file's name, for a caller that names it
    /// its own way: "No such file or directory", "is a directory".
    pub fn reason(&self) -> String {
        match self.io() {
            Some(e) => io_error(e),
            None => "is a directory".to_string(),
        }
    }

    /// The system's error, when there is one.
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            SaveError::IsADirectory(_) => None,
            SaveError::Open { error, .. }
            | SaveError::Create { error, .. }
            | SaveError::Rename { error, .. } => Some(error),
        }
    }
}

/// An output file being written: `OUT.tmp` until `commit` renames it,
/// removed when dropped uncommitted (an error, a panic, Ctrl-C).
pub struct AtomicFile {
    path: PathBuf,
    /// None: OUT is not a regular file and is written directly.
    tmp: Option<PathBuf>,
    file: File,
}

impl AtomicFile {
    /// Where `create` writes `out` first: None when it is written directly.
    pub fn tmp_path(out: &Path) -> Option<PathBuf> {
        let out = &resolved(out);
        match std::fs::metadata(out) {
            Ok(m) if !m.is_file() || is_kernel_file(out) => None,
            _ => {
                let mut tmp = out.as_os_str().to_owned();
                tmp.push(".tmp");
                Some(PathBuf::from(tmp))
            }
        }
    }

    pub fn create(out: impl AsRef<Path>) -> Result<AtomicFile, SaveError> {
        let path = resolved(out.as_ref());
        let old = std::fs::metadata(&path);
        let direct = |path: PathBuf, truncate: bool| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .truncate(truncate)
                .open(&path)
                .map_err(|error| SaveError::Open {
                    path: path.clone(),
                    error,
                })?;
            Ok(AtomicFile {
                path,
                tmp: None,
                file,
            })
        };
        match &old {
            Ok(m) if m.is_dir() => return Err(SaveError::IsADirectory(path)),
            Ok(m) if !m.is_file() || is_kernel_file(&path) => return direct(path, m.is_file()),
            _ => {}
        }
        let Some(tmp) = Self::tmp_path(&path) else {
            unreachable!("a regular or missing file is written through a temporary one")
        };
        let failed = |error| SaveError::Create {
            path: path.clone(),
            tmp: tmp.clone(),
            error,
        };
        let file = match File::create(&tmp) {
            Ok(file) => file,
            // A file that may be written in a directory that may not: in
            // place, as before there were temporary files.
            Err(e) if old.is_ok() && e.kind() == io::ErrorKind::PermissionDenied => {
                return direct(path, true);
            }
            Err(e) => return Err(failed(e)),
        };
        // The file it replaces keeps its mode (an executable script stays one).
        if let Ok(m) = old {
            file.set_permissions(m.permissions()).map_err(failed)?;
        }
        Ok(AtomicFile {
            path,
            tmp: Some(tmp),
            file,
        })
    }

    /// The file to write to.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Makes what was written OUT (flushed to the file system first, so
    /// OUT is never a renamed empty file after a crash).
    pub fn commit(mut self) -> Result<(), SaveError> {
        if let Some(tmp) = self.tmp.take() {
            let _ = self.file.sync_data();
            if let Err(error) = std::fs::rename(&tmp, &self.path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(SaveError::Rename {
                    path: self.path.clone(),
                    tmp,
                    error,
                });
            }
        }
        Ok(())
    }
}

/// A symbolic link's target (a link stays one: its target is what is
/// replaced); any other path as it is.
fn resolved(path: &Path) -> PathBuf {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(target) = std::fs::canonicalize(path) {
            return target;
        }
    }
    path.to_path_buf()
}

/// Whether `path` is on a file system of the kernel's own files, where a
/// write is a setting (an MTU, a sysctl) and no other file can be made.
fn is_kernel_file(path: &Path) -> bool {
    use nix::sys::statfs::{statfs, DEBUGFS_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC, TRACEFS_MAGIC};
    statfs(path).is_ok_and(|fs| {
        [PROC_SUPER_MAGIC, SYSFS_MAGIC, DEBUGFS_MAGIC, TRACEFS_MAGIC]
            .contains(&fs.filesystem_type())
    })
}

impl io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pk{tag}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_format_comes_from_the_first_bytes() {
        assert_eq!(sniff(b"\n\r\r\n...."), Some(Format::PcapNg));
        assert_eq!(
            sniff(&0xa1b2_c3d4u32.to_le_bytes()),
            Some(Format::Pcap { nanos: false })
        );
        assert_eq!(
            sniff(&0xa1b2_3c4du32.to_be_bytes()),
            Some(Format::Pcap { nanos: true })
        );
        assert_eq!(sniff(b"\n  {\"a\":1}"), Some(Format::Jsonl));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn an_output_replaces_its_file_only_when_committed_and_keeps_its_mode() {
        let dir = temp_dir("af");
        let out = dir.join("out");
        std::fs::write(&out, "old").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o750)).unwrap();
        {
            let mut f = AtomicFile::create(&out).unwrap();
            f.write_all(b"half").unwrap();
            // Dropped uncommitted: the old file stays, no .tmp is left.
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        assert!(!dir.join("out.tmp").exists());
        let mut f = AtomicFile::create(&out).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
        let e = AtomicFile::create(&dir).err().unwrap();
        assert_eq!(e.to_string(), format!("{}: is a directory", dir.display()));
        let e = AtomicFile::create(dir.join("no/such")).err().unwrap();
        assert!(e.to_string().ends_with("No such file or directory"), "{e}");
        // Through a symbolic link: the target changes, the link stays.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        let mut f = AtomicFile::create(&link).unwrap();
        f.write_all(b"via link").unwrap();
        f.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "via link");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unseekable_input_is_kept_for_the_second_pass() {
        let (rx, mut tx) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || tx.write_all(b"abc").unwrap());
        let file = File::from(std::os::fd::OwnedFd::from(rx.try_clone().unwrap()));
        drop(rx);
        let (first, input) = TwoPass::first_pass(file, "copy it", |r| {
            let mut s = String::new();
            r.read_to_string(&mut s).map(|_| s)
        });
        writer.join().unwrap();
        assert_eq!(first.unwrap(), "abc");
        let mut again = String::new();
        input.again().unwrap().read_to_string(&mut again).unwrap();
        assert_eq!(again, "abc");
    }
}
