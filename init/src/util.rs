//! Small helpers shared across commands.

pub use crate::packet::io_error;

/// The foreground command was stopped by Ctrl-C (status 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Opens `path`. A FIFO's open blocks until its other side comes, and a
/// blocked open(2) cannot be interrupted on the shell thread (signal
/// handlers restart it), so a FIFO is opened on a helper thread that
/// Ctrl-C can give up on (the thread ends when the other side shows up).
pub fn open_interruptible(
    path: &std::path::Path,
    options: &std::fs::OpenOptions,
    interrupts: tokio::sync::watch::Receiver<u64>,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    use std::sync::mpsc::RecvTimeoutError;
    let is_fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    if !is_fifo {
        return options.open(path);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, options) = (path.to_owned(), options.clone());
    std::thread::spawn(move || {
        let _ = tx.send(options.open(&path));
    });
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(opened) => return opened,
            Err(RecvTimeoutError::Timeout) => {
                if interrupts.has_changed().unwrap_or(true) {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(std::io::Error::other("the opening thread died"))
            }
        }
    }
}

/// The share of memory one user-sized buffer may take: a fraction of what
/// the kernel says is available, so that PID 1 stays clear of the OOM
/// killer even with other buffers of the same kind alive.
const MEMORY_SHARE: u64 = 8;

/// `MemAvailable` from /proc/meminfo, in bytes (`MemTotal` on kernels too
/// old to report it, 3.14 and earlier).
pub fn available_memory() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| anyhow::anyhow!("/proc/meminfo: {}", io_error(&e)))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    field("MemAvailable")
        .or_else(|| field("MemTotal"))
        .ok_or_else(|| anyhow::anyhow!("/proc/meminfo: no MemAvailable or MemTotal"))
}

/// Refuses a user-given count of items of about `item_bytes` each beyond
/// what one buffer may take here (1/MEMORY_SHARE of the available memory),
/// in one line that names the option and the cap.
pub fn check_memory_cap(option: &str, count: u64, item_bytes: u64) -> anyhow::Result<()> {
    let available = available_memory()?;
    let cap = available / MEMORY_SHARE / item_bytes.max(1);
    if count > cap {
        anyhow::bail!(
            "{option} {count}: at most {cap} here (1/{MEMORY_SHARE} of the {} MiB available, \
             about {item_bytes} bytes each)",
            available >> 20
        );
    }
    Ok(())
}

/// Why `for_each_line` gave up on its input.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line {0} is longer than {1} bytes")]
    TooLong(usize, usize),
    #[error("more than {0} lines")]
    TooMany(usize),
    #[error("{}", io_error(.0))]
    Io(#[from] std::io::Error),
}

/// Calls `each` with every line of `reader` (without its newline, invalid
/// UTF-8 replaced) until it returns `Break`. A line longer than `max_len`
/// bytes or more than `max_lines` lines is an error: a file given by name
/// may be /dev/zero or a huge sparse file, and reading it must end, in
/// bounded memory, instead of growing one line without limit.
pub fn for_each_line(
    mut reader: impl std::io::BufRead,
    max_len: usize,
    max_lines: usize,
    mut each: impl FnMut(&str) -> std::ops::ControlFlow<()>,
) -> Result<(), LineError> {
    use std::io::{BufRead, Read};
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        number += 1;
        if number > max_lines {
            return Err(LineError::TooMany(max_lines));
        }
        line.clear();
        // One byte more than allowed tells a line at the limit from a longer one.
        let n = (&mut reader)
            .take(max_len as u64 + 2)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() > max_len {
            return Err(LineError::TooLong(number, max_len));
        }
        if each(&String::from_utf8_lossy(&line)).is_break() {
            return Ok(());
        }
    }
}

/// Whether `input` (a command's standard input, not a terminal) is at its
/// end, without reading from it: what is there may be the shell's own next
/// lines. A regular file is at its end when its offset reached its size, a
/// pipe or socket when the other side is gone and nothing is left; a
/// character device is read once (/dev/null gives end of file).
pub fn input_at_end(input: &std::fs::File) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Seek;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = input.metadata() else {
        return false;
    };
    // A terminal has keys, not an end.
    if nix::unistd::isatty(input).unwrap_or(false) {
        return false;
    }
    let kind = meta.file_type();
    if kind.is_file() {
        let mut file = input;
        return file.stream_position().is_ok_and(|at| at >= meta.len());
    }
    let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
    let Some(ready) = poll(&mut fds, PollTimeout::ZERO)
        .ok()
        .filter(|&n| n > 0)
        .and_then(|_| fds[0].revents())
    else {
        return false;
    };
    if kind.is_char_device() {
        // Polled first: a device without data (/dev/kmsg) would block.
        let mut byte = [0u8; 1];
        return ready.contains(PollFlags::POLLIN)
            && matches!(nix::unistd::read(input, &mut byte), Ok(0));
    }
    ready.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) && !ready.contains(PollFlags::POLLIN)
}

/// Rows as text columns, each as wide as its widest cell (header
/// included), one space apart; columns marked in `right` are aligned to
/// the right (numbers). Lines end with '\n', trailing spaces trimmed.
pub fn columns(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                text.push(' ');
            }
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&format!("{cell:>w$}"));
            } else {
                text.push_str(&format!("{cell:<w$}"));
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut text = line(&mut header.iter().copied());
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["veth0#2 (ended)".to_string(), "12".to_string()],
            vec!["lo".to_string(), "3456789".to_string()],
        ];
        let text = super::columns(&["IF", "PACKETS"], &[false, true], &rows);
        assert_eq!(
            text,
            "IF              PACKETS\nveth0#2 (ended)      12\nlo              3456789\n"
        );
    }

    use super::*;
    use std::ops::ControlFlow;

    fn lines(text: &[u8], max_len: usize, max_lines: usize) -> Result<Vec<String>, LineError> {
        let mut seen = Vec::new();
        for_each_line(text, max_len, max_lines, |l| {
            seen.push(l.to_string());
            ControlFlow::Continue(())
        })?;
        Ok(seen)
    }

    #[test]
    fn lines_are_read_within_their_limits() {
        assert_eq!(
            lines(b"a\nbcd\n\nlast", 4, 10).unwrap(),
            ["a", "bcd", "", "last"]
        );
        assert_eq!(lines(b"abcd\n", 4, 10).unwrap(), ["abcd"]);
        assert!(matches!(
            lines(b"a\nabcde\n", 4, 10),
            Err(LineError::TooLong(2, 4))
        ));
        assert!(matches!(
            lines(b"abcde", 4, 10),
            Err(LineError::TooLong(1, 4))
        ));
        assert!(matches!(
            lines(b"1\n2\n3\n", 4, 2),
            Err(LineError::TooMany(2))
        ));
        // Break stops early, past what would have been too long.
        let mut first = None;
        for_each_line(&b"x\n\0\0\0\0\0\0"[..], 4, 10, |l| {
            first = Some(l.to_string());
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(first.as_deref(), Some("x"));
    }

    #[test]
    fn the_end_of_files_pipes_and_dev_null_is_seen_without_reading() {
        use std::io::{Read, Write};
        assert!(input_at_end(&std::fs::File::open("/dev/null").unwrap()));
        let path = std::env::temp_dir().join(format!("myinit-util-{}", std::process::id()));
        std::fs::write(&path, "ab").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        assert!(!input_at_end(&file));
        let mut buf = [0u8; 2];
        file.read_exact(&mut buf).unwrap();
        assert!(input_at_end(&file));
        std::fs::remove_file(&path).unwrap();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let reader = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
        assert!(!input_at_end(&reader), "open and empty");
        writer.write_all(b"x").unwrap();
        drop(writer);
        assert!(!input_at_end(&reader), "closed, but data is left");
        let mut byte = [0u8; 1];
        (&reader).read_exact(&mut byte).unwrap();
        assert!(input_at_end(&reader), "closed and read");
    }
}
