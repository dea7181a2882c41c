//! The mount table (/proc/self/mounts): what is mounted where.

use thiserror::Error;

use crate::util::io_error;

/// One line of /proc/self/mounts.
#[derive(Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mounts.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The entries of a mount table's text.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(MountEntry {
                source: unescape_mount_field(f.next()?),
                target: unescape_mount_field(f.next()?),
                fstype: unescape_mount_field(f.next()?),
                options: unescape_mount_field(f.next()?),
            })
        })
        .collect()
}

/// /proc/self/mounts could not be read.
#[derive(Debug, Error)]
#[error("/proc/self/mounts: {} (mount proc first)", io_error(.0))]
pub struct MountsError(std::io::Error);

/// The mount table of this process's mount namespace.
pub fn read_mounts() -> Result<Vec<MountEntry>, MountsError> {
    let text = std::fs::read_to_string("/proc/self/mounts").map_err(MountsError)?;
    Ok(parse_mounts(&text))
}

/// Whether `target` already has a file system of type `fstype` on it.
pub fn is_mounted(target: &str, fstype: &str) -> bool {
    read_mounts()
        .map(|m| m.iter().any(|e| e.target == target && e.fstype == fstype))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_lines_are_unescaped() {
        let m = parse_mounts("tmpfs /mnt/a\\040b tmpfs rw,size=1k 0 0\nproc /proc proc rw 0 0\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, "/mnt/a b");
        assert_eq!(m[0].options, "rw,size=1k");
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(unescape_mount_field("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape_mount_field("end\\04"), "end\\04");
    }
}
