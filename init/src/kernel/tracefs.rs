//! tracefs: where it is (mounted on demand: the VM boots without it) and
//! the record layout of a tracepoint, from its `format` file.

use std::path::{Path, PathBuf};

/// Why tracefs or a tracepoint's format could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("no tracefs at {} (MYINIT_TRACEFS)", .0.display())]
    NotAtEnv(PathBuf),
    #[error("no tracefs at {} (kernel without CONFIG_FTRACE?)", .0.display())]
    Missing(PathBuf),
    #[error("{}: no {event} tracepoint: {error}", .path.display())]
    NoEvent {
        path: PathBuf,
        event: String,
        error: std::io::Error,
    },
}

/// tracefs, mounted when needed; `MYINIT_TRACEFS` names it directly (tests
/// simulate a kernel without tracing by pointing at a missing path).
pub fn dir() -> Result<PathBuf, TracefsError> {
    match std::env::var_os("MYINIT_TRACEFS") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.join("events").is_dir() {
                Ok(dir)
            } else {
                Err(TracefsError::NotAtEnv(dir))
            }
        }
        None => dir_in(Path::new("/sys/kernel")),
    }
}

/// `dir` below another root (tests point it at missing paths).
pub fn dir_in(sys_kernel: &Path) -> Result<PathBuf, TracefsError> {
    let tracing = sys_kernel.join("tracing");
    if tracing.join("events").is_dir() {
        return Ok(tracing);
    }
    let mounted = nix::mount::mount(
        Some("tracefs"),
        &tracing,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    if mounted.is_ok() && tracing.join("events").is_dir() {
        return Ok(tracing);
    }
    // Older kernels: tracefs inside debugfs.
    let debug = sys_kernel.join("debug");
    let _ = nix::mount::mount(
        Some("debugfs"),
        &debug,
        Some("debugfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    let legacy = debug.join("tracing");
    if legacy.join("events").is_dir() {
        return Ok(legacy);
    }
    Err(TracefsError::Missing(tracing))
}

/// A tracepoint's `format` file as text (its fields and `print fmt`).
pub fn event_format(tracefs: &Path, category: &str, name: &str) -> Result<String, TracefsError> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    std::fs::read_to_string(&path).map_err(|error| TracefsError::NoEvent {
        path,
        event: format!("{category}:{name}"),
        error,
    })
}

/// One field of a tracepoint record, from its `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceField {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// Parses a tracepoint `format` file's field lines, e.g.
/// `field:void * location; offset:16; size:8; signed:0;` (tab-separated).
pub fn parse_format(text: &str) -> Vec<TraceField> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = "";
        let mut offset = None;
        let mut size = None;
        for (i, part) in rest.split(';').enumerate() {
            let part = part.trim();
            if i == 0 {
                decl = part;
            } else if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        // The name is the declaration's last word, without any array suffix.
        let name = decl
            .rsplit([' ', '*'])
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("")
            .to_string();
        if let (Some(offset), Some(size)) = (offset, size) {
            fields.push(TraceField { name, offset, size });
        }
    }
    fields
}

/// Reads a tracepoint's fields from tracefs.
pub fn tracepoint_fields(
    tracefs: &Path,
    category: &str,
    name: &str,
) -> Result<Vec<TraceField>, TracefsError> {
    Ok(parse_format(&event_format(tracefs, category, name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kfree_skb_format_of_both_kernels() {
        let v618 = "name: kfree_skb\nID: 1\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:unsigned short protocol;\toffset:32;\tsize:2;\tsigned:0;\n\
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n";
        let fields = parse_format(v618);
        let off = |n: &str| fields.iter().find(|f| f.name == n).map(|f| f.offset);
        assert_eq!(off("location"), Some(16));
        assert_eq!(off("rx_sk"), Some(24));
        assert_eq!(off("protocol"), Some(32));
        assert_eq!(off("reason"), Some(36));
        let v61 = "\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:unsigned short protocol;\toffset:24;\tsize:2;\tsigned:0;\n\
\tfield:enum skb_drop_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n\
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:0;\n";
        let fields = parse_format(v61);
        let off = |n: &str| fields.iter().find(|f| f.name == n).map(|f| f.offset);
        assert_eq!(off("protocol"), Some(24));
        assert_eq!(off("reason"), Some(28));
        assert_eq!(off("comm"), Some(40));
        assert_eq!(off("rx_sk"), None);
    }

    #[test]
    fn missing_tracefs_is_a_clear_error() {
        let err = dir_in(Path::new("/nonexistent-myinit-test")).unwrap_err();
        assert!(err.to_string().contains("no tracefs"), "{err}");
    }
}
