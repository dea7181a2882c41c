//! The kernel's build configuration: /proc/config.gz or a config file,
//! read for the options the capabilities need.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use crate::util::{for_each_line, io_error, LineError};

/// One `CONFIG_X=value` line as (name, value); `# CONFIG_X is not set`,
/// `=n` and other lines are None.
pub fn parse_kconfig_line(line: &str) -> Option<(&str, &str)> {
    if !line.starts_with("CONFIG_") {
        return None;
    }
    let (k, v) = line.split_once('=')?;
    let v = v.trim_matches('"');
    (v != "n").then_some((k, v))
}

/// `CONFIG_X=value` lines; `# CONFIG_X is not set` and absent options
/// are simply not in the map.
#[cfg(test)]
pub fn parse_kconfig(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(parse_kconfig_line)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// /proc/config.gz, else the config file beside the kernel in /boot (the
/// VM's initrd ships Debian's there: that kernel has no /proc/config.gz).
pub fn default_kconfig_path() -> String {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    [
        "/proc/config.gz".to_string(),
        format!("/boot/config-{release}"),
        "/boot/config".to_string(),
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or_else(|| "/proc/config.gz".to_string())
}

/// Longest line and most lines of a kernel config file: a real one has
/// about 12,000 lines of under 200 bytes. The limits end /dev/zero, a huge
/// sparse file or a gzip bomb at once instead of reading it into memory.
const KCONFIG_MAX_LINE: usize = 4096;
const KCONFIG_MAX_LINES: usize = 200_000;

/// Why a kernel config could not be read.
#[derive(Debug, Error)]
pub enum KconfigError {
    #[error("{path}: {}{}", io_error(.error), if .path == "/proc/config.gz" {
        " (kernel without CONFIG_IKCONFIG_PROC; give a config FILE instead)"
    } else {
        ""
    })]
    Open { path: String, error: std::io::Error },
    #[error("{0}: not a file (a kernel config or /proc/config.gz)")]
    NotAFile(String),
    #[error("{path}: {}", io_error(.error))]
    Read { path: String, error: std::io::Error },
    #[error("{path}: bad gzip data: {error}")]
    Gzip { path: String, error: std::io::Error },
    #[error("{path}: {error}: not a kernel config")]
    NotAConfig { path: String, error: LineError },
}

/// Streams the config at `path` (gzip or plain text), keeping only the
/// options `wanted`: memory stays small whatever the file is.
pub fn read_kconfig(
    path: &str,
    wanted: &HashSet<&str>,
) -> Result<HashMap<String, String>, KconfigError> {
    use std::io::BufRead;
    let open_error = |error| KconfigError::Open {
        path: path.to_string(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(open_error)?;
    // Opening a FIFO waits for a writer that may never come.
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_fifo() || meta.file_type().is_socket() {
        return Err(KconfigError::NotAFile(path.to_string()));
    }
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(open_error)?);
    let gzip = reader
        .fill_buf()
        .map_err(|error| KconfigError::Read {
            path: path.to_string(),
            error,
        })?
        .starts_with(&[0x1f, 0x8b]);
    let lines: Box<dyn BufRead> = if gzip {
        Box::new(std::io::BufReader::new(flate2::bufread::GzDecoder::new(
            reader,
        )))
    } else {
        Box::new(reader)
    };
    let mut config = HashMap::new();
    for_each_line(lines, KCONFIG_MAX_LINE, KCONFIG_MAX_LINES, |line| {
        if let Some((k, v)) = parse_kconfig_line(line).filter(|(k, _)| wanted.contains(k)) {
            config.insert(k.to_string(), v.to_string());
        }
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| {
        let path = path.to_string();
        match e {
            LineError::Io(error) if gzip => KconfigError::Gzip { path, error },
            LineError::Io(error) => KconfigError::Read { path, error },
            error => KconfigError::NotAConfig { path, error },
        }
    })?;
    Ok(config)
}
