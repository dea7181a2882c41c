//! The kernel log (/dev/kmsg), read as dmesg reads it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use thiserror::Error;

use crate::util::io_error;

/// /dev/kmsg could not be opened or read.
#[derive(Debug, Error)]
#[error("/dev/kmsg: {}", io_error(.0))]
pub struct KmsgError(std::io::Error);

/// Formats one /dev/kmsg record ("PRIO,SEQ,USEC,FLAGS;message\n KEY=v…")
/// as dmesg does: `[    1.234567] message`.
pub fn format_kmsg_record(record: &str) -> Option<String> {
    let first = record.lines().next()?;
    let (header, message) = first.split_once(';')?;
    let usec: u64 = header.split(',').nth(2)?.parse().ok()?;
    Some(format!(
        "[{:5}.{:06}] {message}",
        usec / 1_000_000,
        usec % 1_000_000
    ))
}

/// Reads every record now in the kernel log, keeping the newest `keep`.
/// Non-blocking, so it ends at the last message instead of waiting.
pub fn read_kmsg(keep: usize) -> Result<VecDeque<String>, KmsgError> {
    let mut kmsg = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(KmsgError)?;
    let mut lines = VecDeque::new();
    // A record is at most about 8 KiB; a smaller buffer gives EINVAL.
    let mut buf = vec![0u8; 16 * 1024];
    // A kernel logging in a loop must not keep us here forever.
    for _ in 0..1_000_000 {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let record = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = format_kmsg_record(&record) {
                    if lines.len() == keep {
                        lines.pop_front();
                    }
                    if keep > 0 {
                        lines.push_back(line);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // EPIPE: the record we were at was overwritten; go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(KmsgError(e)),
        }
    }
    Ok(lines)
}

/// Opens the kernel log after its newest record, non-blocking: reads give
/// only what is logged from now on, so a watch over a test does not blame
/// it for what boot or an earlier test logged.
pub fn open_kmsg_at_end() -> Result<File, KmsgError> {
    let mut kmsg = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(KmsgError)?;
    // SEEK_END on /dev/kmsg moves to the next record to be logged; no other
    // offset is accepted.
    kmsg.seek(SeekFrom::End(0)).map_err(KmsgError)?;
    Ok(kmsg)
}

/// The next record ("PRIO,SEQ,USEC,FLAGS;message\n KEY=v…") of a kernel log
/// opened non-blocking, or None when nothing new has been logged. `buf`
/// must hold a whole record: 16 KiB does.
pub fn next_kmsg_record(kmsg: &mut File, buf: &mut [u8]) -> Result<Option<String>, KmsgError> {
    loop {
        match kmsg.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            // EPIPE: the records we had not read yet were overwritten; the
            // next read gives the oldest one left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(KmsgError(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_format_like_dmesg() {
        assert_eq!(
            format_kmsg_record("6,339,5140900,-;NET: Registered family 10\n SUBSYSTEM=net\n"),
            Some("[    5.140900] NET: Registered family 10".into())
        );
        assert_eq!(
            format_kmsg_record("4,1,123456789012,-,caller=T1;late"),
            Some("[123456.789012] late".into())
        );
        assert_eq!(format_kmsg_record("garbage"), None);
    }
}
