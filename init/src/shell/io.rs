//! Where a command's output goes and where its input comes from. Commands
//! write to the `Output` handed to them and never to fd 1 directly, so a
//! background job's message cannot land in someone's redirect file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

enum Sink {
    Stdout,
    /// A redirect's file and its path, which write errors name.
    File(File, String),
    Memory(Vec<u8>),
}

/// A command's standard output. It hands complete lines to the kernel, each
/// batch of lines in one `write(2)`, so `echo add x > /proc/…/control`
/// reaches the file as the single write that proc control files expect;
/// what is left without a newline is written at `flush` (command end).
pub struct Output {
    sink: Sink,
    pending: Vec<u8>,
}

impl Output {
    pub fn stdout() -> Self {
        Self {
            sink: Sink::Stdout,
            pending: Vec::new(),
        }
    }

    pub fn file(file: File, path: &str) -> Self {
        Self {
            sink: Sink::File(file, path.to_string()),
            pending: Vec::new(),
        }
    }

    /// Collects output in memory (also a placeholder while a command
    /// lends its real output to a task).
    pub fn memory() -> Self {
        Self {
            sink: Sink::Memory(Vec::new()),
            pending: Vec::new(),
        }
    }

    /// What a memory output collected.
    #[cfg(test)]
    pub fn contents(&self) -> &[u8] {
        match &self.sink {
            Sink::Memory(v) => v,
            _ => &[],
        }
    }

    /// The file descriptor a child process should inherit as its stdout.
    pub fn child_stdio(&mut self) -> io::Result<std::process::Stdio> {
        self.flush()?;
        Ok(match &self.sink {
            Sink::Stdout => std::process::Stdio::inherit(),
            Sink::File(f, _) => f.try_clone()?.into(),
            Sink::Memory(_) => std::process::Stdio::piped(),
        })
    }

    fn write_out(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout => write_all_fd(io::stdout().as_fd(), bytes),
            // `echo 9999 > /sys/…/mtu`: the kernel's refusal names the file.
            Sink::File(f, path) => f.write_all(bytes).map_err(|e| {
                io::Error::new(e.kind(), format!("{path}: {}", crate::util::io_error(&e)))
            }),
            Sink::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

/// Writes straight to a descriptor, bypassing std's stdout buffer so output
/// order with child processes and the line editor stays as written.
fn write_all_fd(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Past this, text without a newline is written anyway (binary data
/// such as `cat image > file` must not pile up in memory).
const MAX_PENDING: usize = 64 * 1024;

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Only the new bytes can hold a newline the buffer did not have.
        let newline_in_new = buf.iter().rposition(|&b| b == b'\n');
        let before = self.pending.len();
        self.pending.extend_from_slice(buf);
        let cut = match newline_in_new {
            Some(at) => before + at + 1,
            None if self.pending.len() > MAX_PENDING => self.pending.len(),
            None => return Ok(buf.len()),
        };
        let rest = self.pending.split_off(cut);
        let lines = std::mem::replace(&mut self.pending, rest);
        self.write_out(&lines)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let bytes = std::mem::take(&mut self.pending);
            self.write_out(&bytes)?;
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A command's standard input: the console, or the file of `< FILE`.
pub enum Input {
    Console,
    File(File),
}

impl Input {
    /// A readable handle of its own (a dup of fd 0 for the console).
    pub fn open(&self) -> io::Result<File> {
        match self {
            Input::Console => Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?)),
            Input::File(f) => f.try_clone(),
        }
    }

    pub fn child_stdio(&self) -> io::Result<std::process::Stdio> {
        Ok(match self {
            Input::Console => std::process::Stdio::inherit(),
            Input::File(f) => f.try_clone()?.into(),
        })
    }

    pub fn is_console(&self) -> bool {
        matches!(self, Input::Console)
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Console => io::stdin().read(buf),
            Input::File(f) => f.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_hands_over_whole_lines_only() {
        let mut out = Output::memory();
        write!(out, "add").unwrap();
        write!(out, " nat46dev").unwrap();
        assert!(out.contents().is_empty());
        writeln!(out).unwrap();
        assert_eq!(out.contents(), b"add nat46dev\n");
        write!(out, "tail").unwrap();
        out.flush().unwrap();
        assert_eq!(out.contents(), b"add nat46dev\ntail");
    }

    #[test]
    fn output_without_newlines_is_not_held_without_bound() {
        let mut out = Output::memory();
        let chunk = vec![0u8; 16 * 1024];
        for _ in 0..8 {
            out.write_all(&chunk).unwrap();
        }
        // Written once it passed the bound, not kept until the end.
        assert!(
            out.contents().len() > MAX_PENDING,
            "{}",
            out.contents().len()
        );
        out.flush().unwrap();
        assert_eq!(out.contents().len(), 8 * chunk.len());
    }
}
