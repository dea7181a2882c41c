//! Small helpers shared across commands.

/// An I/O error as users read it: "No such file or directory", without
/// std's "(os error 2)" suffix.
pub fn io_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
