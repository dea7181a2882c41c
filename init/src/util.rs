//! Small helpers shared across commands.

/// An I/O error as users read it: "No such file or directory", without
/// std's "(os error 2)" suffix.
pub fn io_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

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
